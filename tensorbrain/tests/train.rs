//! The training loop end to end: learning, logs and plots, gradient accumulation, mixed
//! precision, and checkpoints that resume bit for bit.

use std::path::{Path, PathBuf};

use tensorbrain::checkpoint::{TrainingCheckpoint, STATE_FILE};
use tensorbrain::data::{DataLoader, TensorDataset};
use tensorbrain::optim::lr_scheduler::StepLR;
use tensorbrain::optim::{Adam, AdamOptions, Sgd, SgdOptions};
use tensorbrain::prelude::*;
use tensorbrain::train::{classification, Precision, SchedulerStep, Trainer};
use tensorbrain::Generator;

#[model]
pub struct Net {
    fc1: Linear<8, 32>,
    drop: Dropout<20>,
    fc2: Linear<32, 3>,
}

#[model]
impl Net {
    pub fn forward(&self, x: tb![B, 8]) -> tb![B, 3] {
        self.fc2(self.drop(self.fc1(x).relu()))
    }
}

fn net_forward(m: &Net, x: &Tensor) -> tensorbrain::Result<Tensor> {
    m.forward_dyn(std::slice::from_ref(x))
}

/// Three Gaussian blobs in 8 dimensions (the same centers for every seed), `n` points each.
fn blobs(n: usize, seed: u64) -> (Tensor, Tensor) {
    let centers = Tensor::randn_with(&[3, 8], DType::F32, &mut Generator::new(0)).mul_scalar(2.0);
    let mut g = Generator::new(seed);
    let labels: Vec<i64> = (0..3 * n as i64).map(|i| i % 3).collect();
    let labels = Tensor::from_vec(labels, &[3 * n]);
    let x = centers.index_select(0, &labels).add(&Tensor::randn_with(&[3 * n, 8], DType::F32, &mut g));
    (x, labels)
}

fn loader(x: &Tensor, y: &Tensor, batch: usize, shuffle: bool) -> DataLoader {
    DataLoader::builder(TensorDataset::new(vec![x.clone(), y.clone()]).unwrap()).batch_size(batch).shuffle(shuffle).seed(7).build().unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tensorbrain-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn weights(m: &Net) -> Vec<(String, Vec<f32>)> {
    m.state_dict().into_iter().map(|(n, t)| (n, t.to_vec::<f32>())).collect()
}

#[test]
fn fit_learns_and_writes_log_and_plot() {
    let dir = temp_dir("fit");
    let (x, y) = blobs(60, 1);
    let (tx, ty) = blobs(30, 2);
    let mut net = Net::init(0);
    let opt = Adam::new(net.parameters(), AdamOptions { lr: 1e-2, ..Default::default() }).unwrap();
    let mut trainer = Trainer::new(&mut net, opt).progress(false).top_k(2).log_csv(dir.join("log.csv")).plot(dir.join("curves.png"));
    let history = trainer.fit(&loader(&x, &y, 16, true), Some(&loader(&tx, &ty, 32, false)), 6, &classification(net_forward)).unwrap().clone();
    assert_eq!(history.epochs.len(), 6);
    let (first, last) = (&history.epochs[0], history.last().unwrap());
    assert!(last.train_loss < 0.5 * first.train_loss, "loss {} -> {}", first.train_loss, last.train_loss);
    assert!(last.eval_accuracy.unwrap() > 0.9, "eval accuracy {:?}", last.eval_accuracy);
    assert!(last.eval_top_k_accuracy.unwrap() >= last.eval_accuracy.unwrap());
    let csv = std::fs::read_to_string(dir.join("log.csv")).unwrap();
    assert_eq!(csv.lines().count(), 7, "{csv}");
    let png = std::fs::read(dir.join("curves.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png.len() > 2000, "a plot with content, got {} bytes", png.len());
}

/// Runs `epochs` epochs of Adam + StepLR with dropout, optionally stopping after `stop_after`
/// and resuming in a fresh trainer (fresh model, optimizer and scheduler) from a checkpoint.
fn run(epochs: usize, stop_after: Option<usize>, dir: &Path) -> Vec<(String, Vec<f32>)> {
    let (x, y) = blobs(40, 3);
    let data = loader(&x, &y, 16, true);
    let make = |net: &mut Net| {
        let mut opt = Adam::new(net.parameters(), AdamOptions { lr: 1e-2, ..Default::default() }).unwrap();
        let sched = StepLR::new(&mut opt, 1, 0.5).unwrap();
        (opt, sched)
    };
    manual_seed(11);
    let mut net = Net::init(5);
    let (opt, sched) = make(&mut net);
    let mut trainer = Trainer::new(&mut net, opt).progress(false).scheduler(sched, SchedulerStep::Epoch).checkpoint_dir(dir);
    match stop_after {
        None => {
            trainer.fit(&data, None, epochs, &classification(net_forward)).unwrap();
            drop(trainer);
            weights(&net)
        }
        Some(stop) => {
            trainer.fit(&data, None, stop, &classification(net_forward)).unwrap();
            drop(trainer);
            // Disturb everything the checkpoint must restore.
            manual_seed(999);
            let mut fresh = Net::init(77);
            let (opt, sched) = make(&mut fresh);
            let mut trainer = Trainer::new(&mut fresh, opt).progress(false).scheduler(sched, SchedulerStep::Epoch);
            trainer.resume(dir).unwrap();
            assert_eq!(trainer.epoch(), stop);
            trainer.fit(&data, None, epochs, &classification(net_forward)).unwrap();
            assert_eq!(trainer.history().epochs.len(), epochs);
            drop(trainer);
            weights(&fresh)
        }
    }
}

#[test]
fn resume_after_an_epoch_is_bit_identical() {
    let straight = run(3, None, &temp_dir("straight"));
    let resumed = run(3, Some(1), &temp_dir("resumed"));
    assert_eq!(straight.len(), resumed.len());
    for ((name, a), (_, b)) in straight.iter().zip(&resumed) {
        let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{name} differs after resuming");
    }
}

#[test]
fn broken_checkpoints_are_errors_that_name_the_file() {
    let dir = temp_dir("broken");
    run(1, None, &dir);
    assert!(TrainingCheckpoint::load(&dir).is_ok());

    // Truncated state file.
    let other = temp_dir("broken-other");
    run(2, None, &other);
    let state = TrainingCheckpoint::load(&other).unwrap().path.join(STATE_FILE);
    let bytes = std::fs::read(&state).unwrap();
    std::fs::write(&state, &bytes[..bytes.len() / 2]).unwrap();
    let err = TrainingCheckpoint::load(&other).err().expect("a truncated file is an error").to_string();
    assert!(err.contains(STATE_FILE) && err.contains("truncated"), "{err}");
    assert!(err.contains("ckpt-000001-epoch1"), "the error points at the older checkpoint: {err}");

    // Missing directory.
    let err = TrainingCheckpoint::load(&dir.join("nope")).err().expect("a missing checkpoint is an error").to_string();
    assert!(err.contains("is missing"), "{err}");

    // A checkpoint of another architecture does not load, and changes nothing.
    #[model]
    pub struct Wider {
        fc1: Linear<8, 64>,
        fc2: Linear<64, 3>,
    }
    #[model]
    impl Wider {
        pub fn forward(&self, x: tb![B, 8]) -> tb![B, 3] {
            self.fc2(self.fc1(x))
        }
    }
    let mut wider = Wider::init(0);
    let before: Vec<Vec<f32>> = wider.parameters().iter().map(|t| t.to_vec::<f32>()).collect();
    let opt = Sgd::new(wider.parameters(), SgdOptions { lr: 0.1, ..Default::default() }).unwrap();
    let mut trainer = Trainer::new(&mut wider, opt).progress(false);
    let err = trainer.resume(&temp_dir("broken-again").join("x")).err().unwrap().to_string();
    assert!(err.contains("is missing"), "{err}");
    run(1, None, &dir);
    let err = trainer.resume(&dir).expect_err("wrong architecture").to_string();
    assert!(err.contains("fc1.weight has shape [32, 8] in the file but [64, 8] in the model"), "{err}");
    drop(trainer);
    let after: Vec<Vec<f32>> = wider.parameters().iter().map(|t| t.to_vec::<f32>()).collect();
    assert_eq!(before, after);
}

#[model]
pub struct Linear2 {
    fc: Linear<8, 3>,
}

#[model]
impl Linear2 {
    pub fn forward(&self, x: tb![B, 8]) -> tb![B, 3] {
        self.fc(x)
    }
}

#[test]
fn accumulating_two_half_batches_equals_one_full_batch() {
    let (x, y) = blobs(16, 4); // 48 samples
    let trained = |batch: usize, accumulate: usize| {
        let mut m = Linear2::init(3);
        let opt = Sgd::new(m.parameters(), SgdOptions { lr: 0.5, ..Default::default() }).unwrap();
        let mut t = Trainer::new(&mut m, opt).progress(false).accumulate(accumulate);
        t.fit(&loader(&x, &y, batch, false), None, 2, &classification(|m: &Linear2, x: &Tensor| m.forward_dyn(std::slice::from_ref(x)))).unwrap();
        assert_eq!(t.global_step(), 2 * 48 / (batch * accumulate) as u64);
        drop(t);
        m.parameters().iter().flat_map(|p| p.to_vec::<f32>()).collect::<Vec<f32>>()
    };
    let full = trained(16, 1);
    let accumulated = trained(8, 2);
    // Same update up to f32 summation order.
    for (a, b) in full.iter().zip(&accumulated) {
        assert!((a - b).abs() <= 1e-5 + 1e-5 * a.abs(), "{a} vs {b}");
    }
}

#[test]
fn mixed_precision_trains_against_f32_masters() {
    let (x, y) = blobs(60, 5);
    for precision in [Precision::Bf16, Precision::F16] {
        let mut net = Net::init(1);
        let opt = Adam::new(net.parameters(), AdamOptions { lr: 1e-2, ..Default::default() }).unwrap();
        let mut t = Trainer::new(&mut net, opt).progress(false).precision(precision);
        let h = t.fit(&loader(&x, &y, 16, true), None, 5, &classification(net_forward)).unwrap().clone();
        drop(t);
        let (first, last) = (h.epochs[0].train_loss, h.last().unwrap().train_loss);
        assert!(last < 0.6 * first, "{precision:?}: loss {first} -> {last}");
        assert!(h.last().unwrap().train_accuracy.unwrap() > 0.85, "{precision:?}: {:?}", h.last());
        assert!(net.parameters().iter().all(|p| p.dtype() == DType::F32 && p.is_leaf()), "masters stay f32 leaves");
    }
}

#[test]
fn fit_without_batches_is_an_error_naming_dataset_and_batch_size() {
    let fit = |train: &DataLoader, eval: Option<&DataLoader>| {
        let mut net = Net::init(0);
        let opt = Sgd::new(net.parameters(), SgdOptions { lr: 0.1, ..Default::default() }).unwrap();
        let mut t = Trainer::new(&mut net, opt).progress(false);
        let result = t.fit(train, eval, 1, &classification(net_forward)).map(|h| h.epochs.len());
        assert_eq!(t.epoch(), 0, "no epoch counts as done");
        result.expect_err("training on no batches is an error").to_string()
    };
    let empty = loader(&Tensor::zeros(&[0, 8], DType::F32), &Tensor::zeros(&[0], DType::I64), 16, true);
    let e = fit(&empty, None);
    assert!(e.contains("training data") && e.contains("0 samples") && e.contains("batch size 16"), "{e}");

    // drop_last with a batch larger than the dataset: every batch is dropped.
    let (x, y) = blobs(3, 1); // 9 samples
    let dropped = DataLoader::builder(TensorDataset::new(vec![x.clone(), y.clone()]).unwrap()).batch_size(16).drop_last(true).build().unwrap();
    let e = fit(&dropped, None);
    assert!(e.contains("9 samples") && e.contains("batch size 16") && e.contains("drop_last"), "{e}");

    // An empty evaluation set is no better: its loss would read 0.
    let e = fit(&loader(&x, &y, 4, false), Some(&empty));
    assert!(e.contains("evaluation data") && e.contains("0 samples"), "{e}");
}

#[test]
fn nan_logits_are_never_counted_correct() {
    use tensorbrain::train::count_correct;
    let labels = Tensor::from_vec(vec![0i64, 1, 2], &[3]);
    let nan = Tensor::full(&[3, 3], f64::NAN, DType::F32);
    assert_eq!(count_correct(&nan, &labels, 2).unwrap(), (0, 0), "all-NaN rows");
    // A NaN anywhere in a row outranks the label's score, as NaN wins torch.argmax.
    let some_nan = Tensor::from_vec(vec![5.0f32, f32::NAN, 1.0, f32::NAN, 0.0, 9.0, 1.0, 2.0, 3.0], &[3, 3]);
    // Row 0: label 0 is behind the NaN (top-2 only). Row 1: label 1 scores 0 behind NaN and 9.
    // Row 2: label 2 is top.
    assert_eq!(count_correct(&some_nan, &labels, 2).unwrap(), (1, 2));

    // Trainer::evaluate on a model whose weights are NaN scores 0%, not 100%.
    let (x, y) = blobs(10, 1);
    let mut net = Net::init(0);
    tensorbrain::autograd::no_grad(|| net.parameters().iter().for_each(|p| p.fill_(f64::NAN)));
    let opt = Sgd::new(net.parameters(), SgdOptions { lr: 0.1, ..Default::default() }).unwrap();
    let mut t = Trainer::new(&mut net, opt).progress(false);
    let m = t.evaluate(&loader(&x, &y, 8, false), &classification(net_forward)).unwrap();
    assert_eq!(m.accuracy(), Some(0.0));
}

#[test]
fn f16_training_whose_every_step_overflows_stops_as_diverged() {
    // lr 1e6 wrecks the weights in the first step; after that every f16 step overflows, and the
    // loss scaler halves its scale each time. Without a check the run would "finish" with
    // almost every step skipped and the NaN logits counted as correct.
    let (x, y) = blobs(100, 6);
    let mut net = Net::init(1);
    let opt = Adam::new(net.parameters(), AdamOptions { lr: 1e6, ..Default::default() }).unwrap();
    let mut t = Trainer::new(&mut net, opt).progress(false).precision(Precision::F16);
    let e = t.fit(&loader(&x, &y, 4, true), None, 2, &classification(net_forward)).expect_err("a diverged f16 run is an error").to_string();
    assert!(e.contains("training diverged") && e.contains("loss scale"), "{e}");
}

#[test]
fn an_epoch_in_which_every_f16_step_overflows_is_divergence() {
    // Non-finite weights from the start: every step of the first epoch is skipped. The epoch
    // has only 3 steps, far fewer than it takes the scale to collapse.
    let (x, y) = blobs(4, 6);
    let mut net = Net::init(1);
    tensorbrain::autograd::no_grad(|| net.parameters()[0].fill_(f64::INFINITY));
    let opt = Adam::new(net.parameters(), AdamOptions::default()).unwrap();
    let mut t = Trainer::new(&mut net, opt).progress(false).precision(Precision::F16);
    let e = t.fit(&loader(&x, &y, 4, true), None, 1, &classification(net_forward)).expect_err("an epoch of skipped steps is an error").to_string();
    assert!(e.contains("training diverged") && e.contains("all 3 optimizer steps"), "{e}");
}

#[test]
fn a_trainer_on_a_device_refuses_a_model_left_on_the_cpu() {
    // The model must move before the optimizer is built (the optimizer holds its parameters);
    // a trainer told to run on a GPU with a CPU model says so, naming a parameter, before any
    // step changes anything.
    let (x, y) = blobs(10, 1);
    let mut net = Net::init(0);
    let before = weights(&net);
    let opt = Sgd::new(net.parameters(), SgdOptions { lr: 0.1, ..Default::default() }).unwrap();
    let mut t = Trainer::new(&mut net, opt).progress(false).device(Device::Cuda(0));
    let err = t.fit(&loader(&x, &y, 8, true), None, 1, &classification(net_forward)).unwrap_err().to_string();
    assert!(err.starts_with("Trainer::device(cuda:0): parameter fc1.") && err.contains("is on cpu") && err.contains("to_device"), "{err}");
    let err = t.evaluate(&loader(&x, &y, 8, false), &classification(net_forward)).unwrap_err().to_string();
    assert!(err.contains("is on cpu"), "{err}");
    drop(t);
    assert_eq!(weights(&net), before);
}
