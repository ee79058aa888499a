//! Training checkpoints under faults: a save that fails part-way (an I/O error after the first
//! file, a disk that fills up, the process killed between files) never costs the previous
//! checkpoint, which resumes bit for bit. Also: the last K are kept, stale temporaries are
//! cleaned up, checkpoints of the layout before checkpoint directories still load, corrupt
//! files say what is wrong in words, checksums catch flipped bits, and floats in the history
//! round-trip exactly.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tensorbrain::checkpoint::{
    from_safetensors_bytes, to_safetensors_bytes, CheckpointDir, CheckpointFs, LocalFs, TrainingCheckpoint, TrainingState, MODEL_FILE,
    STATE_FILE,
};
use tensorbrain::data::{DataLoader, TensorDataset};
use tensorbrain::optim::lr_scheduler::StepLR;
use tensorbrain::optim::{Adam, AdamOptions, Optimizer};
use tensorbrain::prelude::*;
use tensorbrain::train::{classification, EpochRecord, History, SchedulerStep, Trainer};
use tensorbrain::Generator;

#[model]
pub struct Net {
    fc1: Linear<6, 16>,
    drop: Dropout<20>,
    fc2: Linear<16, 3>,
}

#[model]
impl Net {
    pub fn forward(&self, x: tb![B, 6]) -> tb![B, 3] {
        self.fc2(self.drop(self.fc1(x).relu()))
    }
}

fn net_forward(m: &Net, x: &Tensor) -> tensorbrain::Result<Tensor> {
    m.forward_dyn(std::slice::from_ref(x))
}

fn data() -> DataLoader {
    let centers = Tensor::randn_with(&[3, 6], DType::F32, &mut Generator::new(0)).mul_scalar(2.0);
    let labels = Tensor::from_vec((0..60i64).map(|i| i % 3).collect(), &[60]);
    let x = centers.index_select(0, &labels).add(&Tensor::randn_with(&[60, 6], DType::F32, &mut Generator::new(1)));
    DataLoader::builder(TensorDataset::new(vec![x, labels]).unwrap()).batch_size(16).shuffle(true).seed(7).build().unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tensorbrain-ckpt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every tensor of a model as bits, by name.
fn bits(m: &Net) -> Vec<(String, Vec<u32>)> {
    m.state_dict().into_iter().map(|(n, t)| (n, t.to_vec::<f32>().iter().map(|v| v.to_bits()).collect())).collect()
}

/// A trainer of `Net` with Adam, StepLR and dropout: everything a checkpoint must restore.
fn trainer(net: &mut Net, store: Option<CheckpointDir>) -> Trainer<'_, Net> {
    let mut opt = Adam::new(net.parameters(), AdamOptions { lr: 1e-2, ..Default::default() }).unwrap();
    let sched = StepLR::new(&mut opt, 1, 0.5).unwrap();
    let t = Trainer::new(net, opt).progress(false).scheduler(sched, SchedulerStep::Epoch);
    match store {
        Some(s) => t.checkpoints(s),
        None => t,
    }
}

/// The weights and history after `epochs` epochs without interruption.
fn straight_run(epochs: usize) -> (Vec<(String, Vec<u32>)>, History) {
    manual_seed(11);
    let mut net = Net::init(5);
    let mut t = trainer(&mut net, None);
    let history = t.fit(&data(), None, epochs, &classification(net_forward)).unwrap().clone();
    drop(t);
    (bits(&net), history)
}

/// Resumes from `dir` in a fresh process state, checks that the checkpoint is epoch
/// `expected_epoch`, trains on to `epochs` and checks the result is bit-identical to a run
/// that never stopped, weights and logged figures alike.
fn resume_and_finish(dir: &Path, expected_epoch: usize, epochs: usize) {
    manual_seed(999);
    let mut net = Net::init(77);
    let mut t = trainer(&mut net, Some(CheckpointDir::new(dir)));
    t.resume(dir).unwrap();
    assert_eq!(t.epoch(), expected_epoch, "resumed from the last complete checkpoint");
    t.fit(&data(), None, epochs, &classification(net_forward)).unwrap();
    let history = t.history().clone();
    drop(t);
    let (want, want_history) = straight_run(epochs);
    assert_eq!(bits(&net), want, "weights after resuming differ from an uninterrupted run");
    assert_same_figures(&history, &want_history);
}

/// The logged figures, bit for bit (time and throughput excepted: they are measured).
fn assert_same_figures(a: &History, b: &History) {
    assert_eq!(a.epochs.len(), b.epochs.len());
    let key = |r: &EpochRecord| {
        let f = |v: Option<f64>| v.map(f64::to_bits);
        (r.epoch, r.train_loss.to_bits(), f(r.train_accuracy), f(r.eval_loss), f(r.eval_accuracy), r.lr.to_bits(), r.skipped_steps)
    };
    for (x, y) in a.epochs.iter().zip(&b.epochs) {
        assert_eq!(key(x), key(y), "epoch {} logs differently after a resume", x.epoch);
    }
}

// ---------------------------------------------------------------------------------------------
// A disk that fails on command
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Fault {
    None,
    /// The `n`-th file written from now on fails with an I/O error, before any byte lands.
    FailWrite(usize),
    /// The disk has this many bytes left: the write that needs more stores what fits, then
    /// fails with ENOSPC, as a full disk does.
    FullAfter(usize),
    /// The process is killed (SIGKILL) when about to write the `n`-th file from now on.
    KillAtWrite(usize),
}

/// A [`CheckpointFs`] on the local disk whose next save meets the armed fault.
#[derive(Clone)]
struct FaultyDisk(Arc<Mutex<Fault>>);

impl FaultyDisk {
    fn new() -> FaultyDisk {
        FaultyDisk(Arc::new(Mutex::new(Fault::None)))
    }

    fn arm(&self, fault: Fault) {
        *self.0.lock().unwrap() = fault;
    }
}

impl CheckpointFs for FaultyDisk {
    fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut fault = self.0.lock().unwrap();
        match *fault {
            Fault::None => LocalFs.write_file(path, bytes),
            Fault::FailWrite(1) => {
                *fault = Fault::None;
                Err(io::Error::other("injected I/O error"))
            }
            Fault::FailWrite(n) => {
                *fault = Fault::FailWrite(n - 1);
                LocalFs.write_file(path, bytes)
            }
            Fault::FullAfter(left) if bytes.len() <= left => {
                *fault = Fault::FullAfter(left - bytes.len());
                LocalFs.write_file(path, bytes)
            }
            Fault::FullAfter(left) => {
                *fault = Fault::FullAfter(0);
                std::fs::write(path, &bytes[..left])?;
                Err(io::Error::from_raw_os_error(libc::ENOSPC))
            }
            Fault::KillAtWrite(1) => kill_this_process(),
            Fault::KillAtWrite(n) => {
                *fault = Fault::KillAtWrite(n - 1);
                LocalFs.write_file(path, bytes)
            }
        }
    }
}

/// Dies at once, like `kill -9` from outside: SIGKILL cannot be caught, so no destructor,
/// cleanup or buffered write runs.
#[cfg(unix)]
fn kill_this_process() -> ! {
    // SAFETY: sends a signal to this process, which ends it.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    unreachable!("SIGKILL ends the process")
}

#[cfg(not(unix))]
fn kill_this_process() -> ! {
    std::process::abort()
}

/// Trains one epoch (its checkpoint saves cleanly), arms `fault`, then trains on to epoch 2,
/// whose save meets the fault. Returns the error `fit` reported.
fn train_into_fault(dir: &Path, fault: Fault) -> String {
    let disk = FaultyDisk::new();
    manual_seed(11);
    let mut net = Net::init(5);
    let mut t = trainer(&mut net, Some(CheckpointDir::new(dir).with_fs(disk.clone())));
    let data = data();
    t.fit(&data, None, 1, &classification(net_forward)).unwrap();
    disk.arm(fault);
    t.fit(&data, None, 3, &classification(net_forward)).expect_err("the save of epoch 2 fails").to_string()
}

#[test]
fn an_io_error_after_the_first_file_keeps_the_previous_checkpoint() {
    let dir = temp_dir("fail-second");
    // Files of a save: model, training state, checksums. Fail the second.
    let err = train_into_fault(&dir, Fault::FailWrite(2));
    assert!(err.contains("injected I/O error") && err.contains(STATE_FILE), "{err}");
    assert!(err.contains("epoch1"), "the error says the previous checkpoint is intact: {err}");
    let store = CheckpointDir::new(&dir);
    assert_eq!(store.list().unwrap().len(), 1, "only the epoch-1 checkpoint is committed");
    assert_eq!(temporaries(&dir), Vec::<String>::new(), "a failed save removes what it wrote");
    resume_and_finish(&dir, 1, 3);
}

#[test]
fn a_full_disk_keeps_the_previous_checkpoint() {
    // The disk fills up 100 bytes into the model file, then 100 bytes into the training state
    // (the model file of epoch 2 is as long as epoch 1's, give or take a digit of its save id).
    let first = temp_dir("full-probe");
    train_into_fault(&first, Fault::FailWrite(1));
    let model_len = std::fs::metadata(find(&first, MODEL_FILE)).unwrap().len() as usize;
    for left in [100, model_len + 100] {
        let dir = temp_dir(&format!("full-{left}"));
        let err = train_into_fault(&dir, Fault::FullAfter(left));
        assert!(err.contains("No space left on device"), "{err}");
        assert_eq!(CheckpointDir::new(&dir).list().unwrap().len(), 1);
        assert_eq!(temporaries(&dir), Vec::<String>::new());
        resume_and_finish(&dir, 1, 3);
    }
}

#[test]
fn a_failure_after_both_files_before_the_commit_keeps_the_previous_checkpoint() {
    // The third file of a save is its list of checksums, written after both data files.
    let dir = temp_dir("fail-third");
    let err = train_into_fault(&dir, Fault::FailWrite(3));
    assert!(err.contains("injected I/O error"), "{err}");
    assert_eq!(CheckpointDir::new(&dir).list().unwrap().len(), 1);
    resume_and_finish(&dir, 1, 3);
}

/// Where the killed child of [`a_kill_between_files_keeps_the_previous_checkpoint`] works.
const CHILD_DIR: &str = "TENSORBRAIN_TEST_KILLED_SAVE_DIR";

#[cfg(unix)]
#[test]
#[ignore = "run as a child process by a_kill_between_files_keeps_the_previous_checkpoint"]
fn child_killed_between_files() {
    let dir = PathBuf::from(std::env::var(CHILD_DIR).expect("run by a_kill_between_files_keeps_the_previous_checkpoint"));
    train_into_fault(&dir, Fault::KillAtWrite(2));
    unreachable!("the process was killed while saving epoch 2");
}

#[cfg(unix)]
#[test]
fn a_kill_between_files_keeps_the_previous_checkpoint() {
    use std::os::unix::process::ExitStatusExt;
    let dir = temp_dir("kill");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["child_killed_between_files", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, &dir)
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "the child died by SIGKILL between the files ({status})");
    // The killed save left its half-written temporary behind: the model file only.
    let stale = temporaries(&dir);
    assert_eq!(stale.len(), 1, "{stale:?}");
    let files: Vec<String> = std::fs::read_dir(dir.join(&stale[0])).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(files, [MODEL_FILE]);
    // Resuming finds epoch 1, and the next save (epoch 2) clears the dead process's temporary.
    resume_and_finish(&dir, 1, 3);
    assert_eq!(temporaries(&dir), Vec::<String>::new());
}

/// Names of entries in `dir` that are not committed checkpoints (temporaries).
fn temporaries(dir: &Path) -> Vec<String> {
    let committed: Vec<PathBuf> = CheckpointDir::new(dir).list().unwrap();
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !committed.contains(p))
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn the_last_k_checkpoints_are_kept() {
    let dir = temp_dir("keep");
    manual_seed(11);
    let mut net = Net::init(5);
    let mut t = trainer(&mut net, Some(CheckpointDir::new(&dir).keep_last(3)));
    t.fit(&data(), None, 5, &classification(net_forward)).unwrap();
    let kept: Vec<String> = CheckpointDir::new(&dir).list().unwrap().iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(kept, ["ckpt-000003-epoch3", "ckpt-000004-epoch4", "ckpt-000005-epoch5"]);
    // Each is a complete checkpoint of its epoch; the default keeps 2.
    for (path, epoch) in CheckpointDir::new(&dir).list().unwrap().iter().zip(3..) {
        assert_eq!(TrainingCheckpoint::load(path).unwrap().state.epoch, epoch);
    }
    drop(t);
    let dir = temp_dir("keep-default");
    let mut t = trainer(&mut net, None).checkpoint_dir(&dir);
    t.fit(&data(), None, 4, &classification(net_forward)).unwrap();
    assert_eq!(CheckpointDir::new(&dir).list().unwrap().len(), 2);
    assert_eq!(TrainingCheckpoint::load(&dir).unwrap().state.epoch, 4, "loading a directory takes its newest checkpoint");
}

#[test]
fn a_new_run_into_an_old_directory_resumes_from_its_own_latest_save() {
    // A run of 3 epochs, then a run from scratch of 1 epoch into the same directory: the
    // newest save is the new run's epoch 1, whatever the epochs of the older ones.
    let dir = temp_dir("rerun");
    manual_seed(11);
    let mut net = Net::init(5);
    trainer(&mut net, None).checkpoint_dir(&dir).fit(&data(), None, 3, &classification(net_forward)).unwrap();
    manual_seed(11);
    let mut net = Net::init(5);
    trainer(&mut net, None).checkpoint_dir(&dir).fit(&data(), None, 1, &classification(net_forward)).unwrap();
    let ckpt = TrainingCheckpoint::load(&dir).unwrap();
    assert_eq!(ckpt.state.epoch, 1);
    assert!(ckpt.path.ends_with("ckpt-000004-epoch1"), "{}", ckpt.path.display());
    resume_and_finish(&dir, 1, 3);
}

// ---------------------------------------------------------------------------------------------
// The layout before checkpoint directories
// ---------------------------------------------------------------------------------------------

#[model]
pub struct Small {
    fc: Linear<4, 3>,
}

#[model]
impl Small {
    pub fn forward(&self, x: tb![B, 4]) -> tb![B, 3] {
        self.fc(x)
    }
}

#[test]
fn checkpoints_of_the_flat_layout_still_load_and_resume() {
    // Written by TensorBrain before checkpoint directories (see the fixture's README): both
    // files directly in the directory, no checksums.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoint_v1");
    let ckpt = TrainingCheckpoint::load(&fixture).unwrap();
    assert_eq!((ckpt.state.epoch, ckpt.state.step), (1, 3));
    assert_eq!(ckpt.path, fixture);

    let x = Tensor::randn_with(&[24, 4], DType::F32, &mut Generator::new(1));
    let y = Tensor::from_vec((0..24i64).map(|i| i % 3).collect(), &[24]);
    let data = DataLoader::builder(TensorDataset::new(vec![x, y]).unwrap()).batch_size(8).shuffle(true).seed(3).build().unwrap();
    let mut m = Small::init(9);
    let opt = Adam::new(m.parameters(), AdamOptions { lr: 1e-2, ..Default::default() }).unwrap();
    let out = temp_dir("flat-resume");
    let mut t = Trainer::new(&mut m, opt).progress(false).checkpoint_dir(&out);
    assert_eq!(t.resume(&fixture).unwrap(), fixture);
    assert_eq!(t.epoch(), 1);
    assert_eq!(t.optimizer().state_dict().params.len(), 2);
    t.fit(&data, None, 2, &classification(|m: &Small, x: &Tensor| m.forward_dyn(std::slice::from_ref(x)))).unwrap();
    drop(t);
    assert_eq!(TrainingCheckpoint::load(&out).unwrap().state.epoch, 2);
    let trained: std::collections::HashMap<String, Tensor> = m.state_dict().into_iter().collect();
    assert_ne!(trained["fc.weight"].to_vec::<f32>(), ckpt.model["fc.weight"].to_vec::<f32>(), "training went on");
}

#[test]
fn an_interrupted_flat_save_is_still_reported() {
    // In the flat layout a save cut off between the files leaves files of different saves.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoint_v1");
    let dir = temp_dir("flat-mixed");
    std::fs::copy(fixture.join(STATE_FILE), dir.join(STATE_FILE)).unwrap();
    let model = from_safetensors_bytes(&std::fs::read(fixture.join(MODEL_FILE)).unwrap()).unwrap();
    let mut tensors: Vec<(String, Tensor)> = model.into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let other_id = std::collections::HashMap::from([("tensorbrain.save_id".to_string(), "another-save".to_string())]);
    std::fs::write(dir.join(MODEL_FILE), to_safetensors_bytes(&tensors, Some(other_id)).unwrap()).unwrap();
    let err = TrainingCheckpoint::load(&dir).err().expect("mixed saves are an error").to_string();
    assert!(err.contains("different saves"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Corrupt files and checksums
// ---------------------------------------------------------------------------------------------

#[test]
fn corrupt_safetensors_are_described_in_words() {
    let t = Tensor::arange(0.0, 6.0, 1.0, DType::F32).reshape(&[2, 3]);
    let bytes = to_safetensors_bytes(&[("w".to_string(), t)], None).unwrap();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let err = |b: &[u8]| from_safetensors_bytes(b).expect_err("corrupt input is an error").to_string();

    assert_eq!(err(&[]), "empty file (0 bytes): not a safetensors file");
    let e = err(&bytes[..5]);
    assert!(e.contains("not a safetensors file") && e.contains("5 bytes"), "{e}");
    // Cut inside the header.
    let cut = 8 + header / 2;
    assert_eq!(err(&bytes[..cut]), format!("truncated: header says {header} bytes, file has {}", header / 2));
    // Cut inside the tensor data.
    let e = err(&bytes[..bytes.len() - 4]);
    assert_eq!(e, "truncated: the header describes 24 bytes of tensor data, the file has 20");
    // Extra bytes after the data.
    let mut long = bytes.clone();
    long.extend_from_slice(&[0; 3]);
    assert_eq!(err(&long), "3 unexpected bytes after the 24 bytes of tensor data the header describes");
    // Something else entirely.
    let e = err(b"PK\x03\x04 this is a zip archive, not safetensors");
    assert!(e.starts_with("not a safetensors file"), "{e}");
    let e = err(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!");
    assert!(e.starts_with("not a safetensors file") && e.contains("JSON"), "{e}");
}

#[test]
fn a_flipped_bit_in_a_checkpoint_is_a_checksum_error() {
    let dir = temp_dir("bitflip");
    manual_seed(11);
    let mut net = Net::init(5);
    trainer(&mut net, None).checkpoint_dir(&dir).fit(&data(), None, 1, &classification(net_forward)).unwrap();
    let model = find(&dir, MODEL_FILE);
    let mut bytes = std::fs::read(&model).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01; // the lowest bit of fc2.bias's last element (or whichever tensor is last)
    std::fs::write(&model, &bytes).unwrap();
    let err = TrainingCheckpoint::load(&dir).err().expect("a corrupt checkpoint is an error").to_string();
    assert!(err.contains("SHA-256") && err.contains(MODEL_FILE) && err.contains("corrupt"), "{err}");
}

/// The path of the file `name` somewhere under `dir`.
fn find(dir: &Path, name: &str) -> PathBuf {
    fn search(dir: &Path, name: &str) -> Option<PathBuf> {
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).find_map(|p| match p.is_dir() {
            true => search(&p, name),
            false => (p.file_name().unwrap() == name).then_some(p),
        })
    }
    search(dir, name).unwrap_or_else(|| panic!("no {name} under {}", dir.display()))
}

// ---------------------------------------------------------------------------------------------
// Floats in the training state
// ---------------------------------------------------------------------------------------------

#[test]
fn history_floats_round_trip_exactly() {
    // 0.9329333333333333 came back as 0.9329333333333332 before; a sweep of random doubles
    // catches any other value a fast float parser rounds wrongly.
    let mut g = Generator::new(3);
    let randoms = Tensor::rand_with(&[2000], DType::F64, &mut g).to_vec::<f64>();
    let mut values = vec![0.9329333333333333, 0.1 + 0.2, 1e-300, f64::MIN_POSITIVE, 5e-324, 1.7976931348623157e308];
    values.extend(randoms.iter().map(|r| r * 10f64.powi((r * 40.0) as i32 - 20)));
    // Non-finite figures too: an f16 epoch with one overflowing batch has a NaN mean loss.
    values.extend([f64::NAN, f64::INFINITY, f64::NEG_INFINITY]);
    let history = History {
        epochs: values
            .chunks(3)
            .enumerate()
            .map(|(i, v)| EpochRecord {
                epoch: i + 1,
                train_loss: v[0],
                train_accuracy: Some(v[1]),
                eval_loss: v.get(2).copied(),
                eval_accuracy: None,
                eval_top_k_accuracy: None,
                lr: v[0] / 7.0,
                seconds: 1.0,
                samples_per_second: 1.0,
                skipped_steps: 0,
            })
            .collect(),
    };
    let dir = temp_dir("floats");
    let net = Net::init(0);
    let opt = Adam::new(net.parameters(), AdamOptions { lr: 0.9329333333333333, ..Default::default() }).unwrap();
    let state = TrainingState::new(7, 70, (1, 2), history.clone());
    TrainingCheckpoint::save(&dir, &net.state_dict(), &opt.state_dict(), &state).unwrap();
    let loaded = TrainingCheckpoint::load(&dir).unwrap();
    assert_same_figures(&loaded.state.history, &history);
    assert_eq!(loaded.optimizer.groups[0].hyperparameters.0["lr"].to_bits(), 0.9329333333333333f64.to_bits());
    // And so the CSV log written after a resume is the same text.
    assert_eq!(loaded.state.history.to_csv().unwrap(), history.to_csv().unwrap());
}
