//! Helpers: the built binary, and scratch folders for configuration files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the real `exgate` binary with `args` and no `EXGATE__*` overrides.
pub fn exgate(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_exgate"));
    cmd.args(args).current_dir(repo());
    for (key, _) in std::env::vars() {
        if key.starts_with("EXGATE__") {
            cmd.env_remove(key);
        }
    }
    cmd.output().expect("run exgate")
}

/// A fresh, empty scratch folder under the system temp dir.
pub fn scratch() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("exgate-it-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `files` (name, content) into a fresh scratch folder and returns it.
pub fn write_files(files: &[(&str, &str)]) -> PathBuf {
    let dir = scratch();
    for (name, content) in files {
        std::fs::write(dir.join(name), content).unwrap();
    }
    dir
}

/// Text of a process output stream.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The path as a `&str` for command lines.
pub fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}
