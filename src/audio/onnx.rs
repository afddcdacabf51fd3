//! ONNX Runtime as the neural models (Silero VAD, smart-turn) share it: the library loaded
//! once per process from a configured path (`ort` with `load-dynamic`, nothing downloaded at
//! build time), the checks on a model's two files, one single-threaded session per model
//! owner, and the answer a full queue gives.

use std::path::{Path, PathBuf};

use ort::session::Session;

use crate::component::ConfigError;

/// A model's pool is full: the caller keeps the decision it would make without the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// Why a model could not be loaded; each names its file (and its config key when missing).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A configured file does not exist.
    #[error("{key}: {}", missing(path))]
    Missing {
        /// The config key that names it.
        key: String,
        /// The path as configured.
        path: PathBuf,
    },
    /// ONNX Runtime could not be loaded from the library.
    #[error("ONNX Runtime library {}: {reason}", path.display())]
    Library {
        /// `library_path`.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The model could not be loaded, or is not the one its owner runs.
    #[error("{what} model {}: {reason}", path.display())]
    Model {
        /// Which model (`Silero`, `smart-turn`).
        what: &'static str,
        /// `model_path`.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// A model's files as its config section names them.
#[derive(Debug, Clone, Copy)]
pub struct Files<'a> {
    /// The config section (`audio.silero`), for the keys in errors.
    pub section: &'static str,
    /// Which model, for errors.
    pub what: &'static str,
    /// `model_path`.
    pub model: &'a Path,
    /// `library_path`.
    pub library: &'a Path,
}

impl Files<'_> {
    /// By config key, the library first (it loads first).
    fn each(&self) -> [(String, &Path); 2] {
        [
            (format!("{}.library_path", self.section), self.library),
            (format!("{}.model_path", self.section), self.model),
        ]
    }

    /// The files that do not exist, as errors at their keys (`voxhook validate`).
    pub fn missing(&self) -> Vec<ConfigError> {
        self.each()
            .into_iter()
            .filter(|(_, path)| !path.is_file())
            .map(|(key, path)| ConfigError {
                key,
                message: missing(path),
            })
            .collect()
    }

    /// The error of a model that loaded but is not what its owner runs.
    pub fn wrong_model(&self, reason: String) -> LoadError {
        LoadError::Model {
            what: self.what,
            path: self.model.to_path_buf(),
            reason,
        }
    }

    /// Loads ONNX Runtime from the library (a no-op when the process already has it) and the
    /// model into a session that runs on the calling thread alone.
    pub fn session(&self) -> Result<Session, LoadError> {
        if let Some((key, path)) = self.each().into_iter().find(|(_, p)| !p.is_file()) {
            return Err(LoadError::Missing {
                key,
                path: path.to_path_buf(),
            });
        }
        // The environment is process-wide; `commit` is a no-op when one already exists.
        ort::init_from(self.library)
            .map_err(|e| LoadError::Library {
                path: self.library.to_path_buf(),
                reason: e.to_string(),
            })?
            .commit();
        // One thread per run: the owner's thread is the one core the model gets, and ONNX
        // Runtime's own thread pool would spin on the cores the calls need.
        Session::builder()
            .and_then(|b| b.with_intra_threads(1).map_err(Into::into))
            .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
            .and_then(|mut b| b.commit_from_file(self.model))
            .map_err(|e| self.wrong_model(e.to_string()))
    }
}

fn missing(path: &Path) -> String {
    format!(
        "{} does not exist (scripts/install-onnx.sh installs it)",
        path.display()
    )
}

/// CPU time this thread has used: what a model run cost, apart from waiting for a core.
pub fn thread_cpu() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    std::time::Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    /// `prctl` options of Linux ≥ 6.3: refuse any mapping that is (or becomes) both
    /// writable and executable, for this process and its children.
    const PR_SET_MDWE: libc::c_int = 65;
    const PR_MDWE_REFUSE_EXEC_GAIN: libc::c_ulong = 1;
    /// Set in the child, which runs the model tests instead of spawning itself again.
    const CHILD: &str = "VOXHOOK_TEST_UNDER_MDWE";

    /// The unit ships `MemoryDenyWriteExecute=yes` (systemd/voxhook.service): ONNX Runtime
    /// must load and run both models without a writable and executable mapping (no JIT). The
    /// kernel's memory-deny-write-execute enforces the same rule on a child test process that
    /// runs both models' tests.
    #[test]
    fn both_models_run_with_memory_deny_write_execute() {
        if std::env::var_os(CHILD).is_some() {
            return;
        }
        let tests = [
            "audio::silero::tests::real_phone_speech_scores_above_silence_and_noise",
            "audio::smart_turn::tests::the_model_agrees_with_pipecat_and_costs_little_cpu",
        ];
        let mut child = std::process::Command::new(std::env::current_exe().unwrap());
        child.args(tests).args(["--exact", "--test-threads=1"]);
        child.env(CHILD, "1");
        // SAFETY: only an async-signal-safe system call runs between fork and exec.
        unsafe {
            child.pre_exec(|| {
                if libc::prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = child
            .output()
            .expect("a test process under PR_SET_MDWE (Linux 6.3 or newer)");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("2 passed"),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
