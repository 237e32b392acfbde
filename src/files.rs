//! The one atomic file writer, used in the pod (`init`: the secret files and the env
//! file) and by the webhook (`certs`, `serve --self-signed`: keys and certificates).
//!
//! Every file goes through a temp file in the same directory, created with
//! `O_CREAT|O_EXCL|O_NOFOLLOW` and given its exact mode on the descriptor (whatever the
//! umask), written and fsync'd; then all are renamed. If any write fails, the temp files
//! are removed and no file is replaced. A rename replaces whatever the target is, a
//! planted symlink included, and never follows it.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// One file to write: its name in the directory, its content and its mode.
#[derive(Clone, PartialEq, Eq)]
pub struct FileOut {
    pub name: String,
    pub bytes: Vec<u8>,
    pub mode: u32,
}

impl FileOut {
    pub fn new(name: impl Into<String>, bytes: impl Into<Vec<u8>>, mode: u32) -> FileOut {
        FileOut {
            name: name.into(),
            bytes: bytes.into(),
            mode,
        }
    }
}

// The content is a secret or a key: never printed, even in a debug log or a panic.
impl fmt::Debug for FileOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FileOut({}, {} bytes, {:04o})",
            self.name,
            self.bytes.len(),
            self.mode
        )
    }
}

/// The temp file of `name` in `dir`: `..tmp.<name>`. Secret file names may not start
/// with `..` (`spec::check_file_name`), so no file, and no other file's temp file, can
/// have it; Kubernetes' atomic volume writer reserves `..`-names (`..data`) the same way.
pub fn temp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("..tmp.{name}"))
}

fn at(action: &str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    Error::io(format!("{action} {}", path.display()))
}

/// A fresh temp file for `name` in `dir` ([`temp_path`]), opened for writing with
/// `O_CREAT|O_EXCL|O_NOFOLLOW` at mode 0600. Whatever sits at that name (a leftover of
/// a crash, or something planted) is unlinked first, never followed.
fn create_temp(dir: &Path, name: &str) -> std::io::Result<(PathBuf, std::fs::File)> {
    let tmp = temp_path(dir, name);
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(&tmp)?;
    Ok((tmp, f))
}

/// Fill a temp file: content, then its exact mode (on the descriptor, whatever the
/// umask), then fsync.
fn fill(
    f: &mut std::fs::File,
    mode: u32,
    content: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    content(f)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.sync_all()
}

/// Write every file of `files` into `dir` (created if missing), all or nothing.
pub fn write_all_or_nothing(dir: &Path, files: &[FileOut]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(at("create", dir))?;
    let mut temps: Vec<PathBuf> = Vec::new();
    let written = files.iter().try_for_each(|file| {
        let (tmp, mut f) =
            create_temp(dir, &file.name).map_err(at("create", &temp_path(dir, &file.name)))?;
        temps.push(tmp.clone());
        fill(&mut f, file.mode, |f| f.write_all(&file.bytes)).map_err(at("write", &tmp))
    });
    if let Err(e) = written {
        for tmp in &temps {
            let _ = std::fs::remove_file(tmp);
        }
        return Err(e);
    }
    for (tmp, file) in temps.iter().zip(files) {
        let target = dir.join(&file.name);
        std::fs::rename(tmp, &target).map_err(at("rename to", &target))?;
    }
    sync_dir(dir)
}

/// The renames are durable once the directory itself is synced.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(at("sync", dir))
}

/// Copy the file `from` to `dir/name` with `mode` the same way, streaming (a binary
/// never sits in memory).
pub fn copy_atomic(from: &Path, dir: &Path, name: &str, mode: u32) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(at("create", dir))?;
    let (tmp, mut to) = create_temp(dir, name).map_err(at("create", &temp_path(dir, name)))?;
    let copied = fill(&mut to, mode, |to| {
        std::io::copy(&mut std::fs::File::open(from)?, to).map(|_| ())
    });
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&tmp);
        return Err(at("copy to", &tmp)(e));
    }
    let target = dir.join(name);
    std::fs::rename(&tmp, &target).map_err(at("rename to", &target))?;
    sync_dir(dir)
}

/// The link that names the current generation of a published file set.
pub const DATA_LINK: &str = "..data";
const GENERATION_PREFIX: &str = "..gen.";

/// Publish `files` in `dir` as one new generation that replaces the previous one at
/// once, as the kubelet does for Secret volumes: the files go into a fresh
/// `..gen.<n>` directory, `..data` is switched to it by renaming a symlink over it (one
/// atomic step), and each `dir/<name>` is a symlink to `..data/<name>`. A reader that
/// opens `..data/` (or a single file) sees the old set or the new one, never a mix or
/// half a file. The previous generation is kept until the next publish, so a reader
/// that resolved `..data` just before the switch can finish reading it.
pub fn publish(dir: &Path, generation: u64, files: &[FileOut]) -> Result<()> {
    let name = format!("{GENERATION_PREFIX}{generation}");
    let gen_dir = dir.join(&name);
    // A leftover of a crashed run with the same number is replaced.
    if gen_dir.exists() {
        std::fs::remove_dir_all(&gen_dir).map_err(at("remove", &gen_dir))?;
    }
    write_all_or_nothing(&gen_dir, files)?;
    let previous = std::fs::read_link(dir.join(DATA_LINK)).ok();
    swap_link(dir, DATA_LINK, Path::new(&name))?;
    for file in files {
        let target = Path::new(DATA_LINK).join(&file.name);
        if std::fs::read_link(dir.join(&file.name)).ok().as_deref() != Some(&target) {
            swap_link(dir, &file.name, &target)?;
        }
    }
    // Names no longer published, and generations older than the previous one.
    let keep: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    let entries = std::fs::read_dir(dir).map_err(at("list", dir))?;
    for entry in entries.flatten() {
        let entry_name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if let Some(n) = entry_name.strip_prefix(GENERATION_PREFIX) {
            let current = n.parse::<u64>().ok() == Some(generation);
            let prior = previous.as_deref() == Some(Path::new(&entry_name));
            if !current && !prior {
                let _ = std::fs::remove_dir_all(&path);
            }
        } else if !entry_name.starts_with("..") && !keep.contains(&entry_name.as_str()) {
            let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
            if is_link {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    sync_dir(dir)
}

/// Point `dir/name` at `target` by renaming a fresh symlink over it.
fn swap_link(dir: &Path, name: &str, target: &Path) -> Result<()> {
    let tmp = temp_path(dir, name);
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(at("remove", &tmp)(e)),
        _ => {}
    }
    std::os::unix::fs::symlink(target, &tmp).map_err(at("link", &tmp))?;
    let path = dir.join(name);
    std::fs::rename(&tmp, &path).map_err(at("rename to", &path))
}

/// The generation `..data` points at, if any.
pub fn current_generation(dir: &Path) -> Option<u64> {
    let link = std::fs::read_link(dir.join(DATA_LINK)).ok()?;
    link.to_str()?.strip_prefix(GENERATION_PREFIX)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn writes_all_files_with_modes_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![
            FileOut::new("a", "one", 0o400),
            FileOut::new("b.yaml", "two", 0o444),
        ];
        write_all_or_nothing(dir.path(), &files).unwrap();
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"one");
        assert_eq!(mode(&dir.path().join("a")), 0o400);
        assert_eq!(mode(&dir.path().join("b.yaml")), 0o444);
        // A name that cannot be created (a directory is in the way) leaves nothing new.
        std::fs::create_dir(temp_path(dir.path(), "c")).unwrap();
        let bad = vec![
            FileOut::new("a", "changed", 0o400),
            FileOut::new("c", "x", 0o400),
        ];
        let e = write_all_or_nothing(dir.path(), &bad).unwrap_err();
        assert!(e.to_string().contains("..tmp.c"), "{e}");
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"one");
        assert!(!dir.path().join("c").exists());
        assert!(!temp_path(dir.path(), "a").exists());
    }

    /// The review's reproduction: a file named like the old temp name of another
    /// (`.a.secret-injector-tmp` beside `a`) took over `a`, with its own mode. In the
    /// plan's order (a BTreeMap: `.` sorts before `a`).
    #[test]
    fn no_file_name_reaches_another_files_temp_name() {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![
            FileOut::new(".a.secret-injector-tmp", "other secret", 0o444),
            FileOut::new("a", "a's secret", 0o400),
        ];
        write_all_or_nothing(dir.path(), &files).unwrap();
        for f in &files {
            let path = dir.path().join(&f.name);
            assert_eq!(std::fs::read(&path).unwrap(), f.bytes, "{}", f.name);
            assert_eq!(mode(&path), f.mode, "{}", f.name);
        }
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        left.sort();
        assert_eq!(left, [".a.secret-injector-tmp", "a"], "no temp file left");
        assert!(
            temp_path(dir.path(), "x")
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("..")
        );
    }

    /// Symlinks planted at a target or at its temp name are replaced, never followed:
    /// the file they point at keeps its content and mode.
    #[test]
    fn planted_symlinks_are_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::os::unix::fs::symlink(&victim, out.join("tls.key")).unwrap();
        std::os::unix::fs::symlink(&victim, temp_path(&out, "ca.key")).unwrap();
        let files = [
            FileOut::new("tls.key", "key", 0o600),
            FileOut::new("ca.key", "ca", 0o600),
        ];
        write_all_or_nothing(&out, &files).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(mode(&victim), 0o600);
        for f in &files {
            let path = out.join(&f.name);
            assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
            assert_eq!(std::fs::read(&path).unwrap(), f.bytes);
        }
        assert_eq!(format!("{:?}", files[0]), "FileOut(tls.key, 3 bytes, 0600)");
    }

    #[test]
    fn copies_with_the_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("src");
        std::fs::write(&from, "binary").unwrap();
        let bin = dir.path().join("bin");
        copy_atomic(&from, &bin, "tool", 0o555).unwrap();
        assert_eq!(std::fs::read(bin.join("tool")).unwrap(), b"binary");
        assert_eq!(mode(&bin.join("tool")), 0o555);
        assert!(!temp_path(&bin, "tool").exists());
        assert!(copy_atomic(&dir.path().join("missing"), &bin, "x", 0o555).is_err());
        assert!(!temp_path(&bin, "x").exists() && !bin.join("x").exists());
    }

    fn read(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name)).unwrap()
    }

    /// Each publish switches every file at once through `..data`, keeps exactly one
    /// previous generation, drops names no longer published and keeps the modes.
    #[test]
    fn publish_switches_generations_through_data() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let one = [
            FileOut::new("user", "app-1", 0o440),
            FileOut::new("pass", "pw-1", 0o400),
        ];
        publish(d, 1, &one).unwrap();
        assert_eq!(
            (read(d, "user"), read(d, "pass")),
            ("app-1".into(), "pw-1".into())
        );
        assert_eq!(mode(&d.join("..data/pass")), 0o400);
        assert_eq!(
            std::fs::metadata(d.join("user"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o440
        );
        assert_eq!(current_generation(d), Some(1));

        let two = [
            FileOut::new("user", "app-2", 0o440),
            FileOut::new("new", "n", 0o444),
        ];
        publish(d, 2, &two).unwrap();
        assert_eq!(read(d, "user"), "app-2");
        assert_eq!(read(d, "new"), "n");
        assert!(!d.join("pass").exists() && std::fs::symlink_metadata(d.join("pass")).is_err());
        // the previous generation stays readable for a reader that resolved it
        assert_eq!(read(d, "..gen.1/pass"), "pw-1");
        publish(d, 3, &two).unwrap();
        assert!(
            !d.join("..gen.1").exists(),
            "only one previous generation is kept"
        );
        assert!(d.join("..gen.2").exists() && d.join("..gen.3").exists());
        let mut names: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["..data", "..gen.2", "..gen.3", "new", "user"]);
    }
}
