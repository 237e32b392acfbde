//! The one atomic file writer, used in the pod (`init`: the secret files and the env
//! file) and by the webhook (`certs`, `serve --self-signed`: keys and certificates).
//!
//! Every file goes through a temp file in the same directory, created with
//! `O_CREAT|O_EXCL|O_NOFOLLOW` and given its exact mode on the descriptor (whatever the
//! umask), written and fsync'd ([`Staged`]); then all are renamed. If any write fails,
//! the temp files are removed and no file is replaced; if a rename fails, the files
//! already renamed are removed again, so a failure leaves none of the set. A rename
//! replaces whatever the target is, a planted symlink included, and never follows it.
//! The refresh sidecar publishes generations behind `..data` ([`publish`]), and a
//! failed publication leaves the previous generation current. [`remove_leftovers`]
//! clears what a killed run left.

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

/// Files written to their temp names and not yet in place: the first half of an
/// all-or-nothing write, which may span several directories (`init`: the secret files,
/// the env file and the env-mode wrapper). Each file is a fresh [`temp_path`], created
/// `O_CREAT|O_EXCL|O_NOFOLLOW`, given its exact mode and fsync'd. [`Staged::commit`]
/// renames them all into place. Dropped without a commit, every temp file is removed,
/// and every directory it created that is still empty: a failure while staging leaves
/// nothing.
#[must_use = "dropped, a staged set is removed"]
#[derive(Debug, Default)]
pub struct Staged {
    /// (temp file, target), in the order they are renamed.
    entries: Vec<(PathBuf, PathBuf)>,
    /// Directories created for this set, outermost first.
    created: Vec<PathBuf>,
    /// Directories whose entries change: synced after the renames.
    dirs: Vec<PathBuf>,
}

impl Staged {
    pub fn new() -> Staged {
        Staged::default()
    }

    /// Stage every file of `files` in `dir` (created if missing).
    pub fn files(&mut self, dir: &Path, files: &[FileOut]) -> Result<()> {
        self.dir(dir)?;
        for file in files {
            let (tmp, mut f) = self.temp(dir, &file.name)?;
            fill(&mut f, file.mode, |f| f.write_all(&file.bytes)).map_err(at("write", &tmp))?;
        }
        Ok(())
    }

    /// Stage a copy of the file `from` as `dir/name` with `mode`, streaming (a binary
    /// never sits in memory).
    pub fn copy(&mut self, from: &Path, dir: &Path, name: &str, mode: u32) -> Result<()> {
        self.dir(dir)?;
        let (tmp, mut to) = self.temp(dir, name)?;
        fill(&mut to, mode, |to| {
            std::io::copy(&mut std::fs::File::open(from)?, to).map(|_| ())
        })
        .map_err(at("copy to", &tmp))
    }

    /// A temp file for `dir/name`, removed unless committed. A directory at the target
    /// fails here, before anything is renamed (a rename cannot replace it).
    fn temp(&mut self, dir: &Path, name: &str) -> Result<(PathBuf, std::fs::File)> {
        let target = dir.join(name);
        if std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
            return Err(at("replace", &target)(
                std::io::ErrorKind::IsADirectory.into(),
            ));
        }
        let (tmp, f) = create_temp(dir, name).map_err(at("create", &temp_path(dir, name)))?;
        self.entries.push((tmp.clone(), target));
        Ok((tmp, f))
    }

    /// Create `dir` and its missing parents, remembering the ones made.
    fn dir(&mut self, dir: &Path) -> Result<()> {
        let mut missing = Vec::new();
        let mut next = Some(dir);
        while let Some(d) = next {
            if d.as_os_str().is_empty() || std::fs::symlink_metadata(d).is_ok() {
                break;
            }
            missing.push(d.to_path_buf());
            next = d.parent();
        }
        self.created.extend(missing.into_iter().rev());
        std::fs::create_dir_all(dir).map_err(at("create", dir))?;
        if !self.dirs.iter().any(|d| d == dir) {
            self.dirs.push(dir.to_path_buf());
        }
        Ok(())
    }

    /// Rename every staged file into place, in the order staged, then sync the
    /// directories. If any of it fails, what this commit already renamed is removed
    /// again, with the remaining temp files: a failed commit leaves none of its files
    /// (a file one of them had replaced is gone too).
    pub fn commit(mut self) -> Result<Committed> {
        let entries = std::mem::take(&mut self.entries);
        let mut done = Committed {
            targets: Vec::new(),
            created: std::mem::take(&mut self.created),
        };
        for (i, (tmp, target)) in entries.iter().enumerate() {
            if let Err(e) = std::fs::rename(tmp, target) {
                for (tmp, _) in &entries[i..] {
                    let _ = std::fs::remove_file(tmp);
                }
                done.undo();
                return Err(at("rename to", target)(e));
            }
            done.targets.push(target.clone());
        }
        for dir in &self.dirs {
            if let Err(e) = sync_dir(dir) {
                done.undo();
                return Err(e);
            }
        }
        Ok(done)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        for (tmp, _) in &self.entries {
            let _ = std::fs::remove_file(tmp);
        }
        remove_empty(&self.created);
    }
}

/// Remove the directories of `created` (outermost first) that are empty, innermost
/// first.
fn remove_empty(created: &[PathBuf]) {
    for dir in created.iter().rev() {
        let _ = std::fs::remove_dir(dir);
    }
}

/// What a [`Staged::commit`] put in place. Dropped, it stays; [`Committed::undo`]
/// removes it again, for a write whose later step failed.
#[derive(Debug)]
pub struct Committed {
    targets: Vec<PathBuf>,
    created: Vec<PathBuf>,
}

impl Committed {
    /// Remove every file the commit put in place, and the directories it created.
    pub fn undo(self) {
        for target in &self.targets {
            let _ = std::fs::remove_file(target);
        }
        remove_empty(&self.created);
    }
}

/// Write every file of `files` into `dir` (created if missing), all or nothing.
pub fn write_all_or_nothing(dir: &Path, files: &[FileOut]) -> Result<()> {
    let mut staged = Staged::new();
    staged.files(dir, files)?;
    staged.commit().map(drop)
}

/// The renames are durable once the directory itself is synced.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(at("sync", dir))
}

/// Remove what a run killed while writing may have left in `dir` (an init container
/// OOM-killed, say): temp files (`..tmp.*`, which may hold values) and generations
/// newer than the one `..data` names, or every generation when there is no `..data`
/// (written, never switched to). The files in place, and the current and previous
/// generations, stay. A missing `dir` is fine.
pub fn remove_leftovers(dir: &Path) {
    let current = current_generation(dir);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if name.starts_with("..tmp.") && !is_dir {
            let _ = std::fs::remove_file(&path);
        } else if let Some(n) = name.strip_prefix(GENERATION_PREFIX)
            && is_dir
        {
            let unpublished = match (n.parse::<u64>(), current) {
                (Ok(n), Some(current)) => n > current,
                (_, None) => true,
                (Err(_), Some(_)) => false,
            };
            if unpublished {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }
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
/// that resolved `..data` just before the switch can finish reading it. A failure
/// leaves the previous generation current and removes the new one.
pub fn publish(dir: &Path, generation: u64, files: &[FileOut]) -> Result<()> {
    stage_generation(dir, generation, files)?.switch()
}

/// A new generation written in full and not yet switched to: the first half of
/// [`publish`]. [`StagedGeneration::switch`] makes it current; dropped without a
/// switch, its directory is removed.
#[must_use = "dropped, a staged generation is removed"]
#[derive(Debug)]
pub struct StagedGeneration {
    dir: PathBuf,
    name: String,
    names: Vec<String>,
    switched: bool,
}

/// Write `files` into a fresh `dir/..gen.<generation>`, all or nothing; nothing visible
/// changes until [`StagedGeneration::switch`].
pub fn stage_generation(
    dir: &Path,
    generation: u64,
    files: &[FileOut],
) -> Result<StagedGeneration> {
    let name = format!("{GENERATION_PREFIX}{generation}");
    let gen_dir = dir.join(&name);
    // A leftover of a crashed run with the same number is replaced.
    if gen_dir.exists() {
        std::fs::remove_dir_all(&gen_dir).map_err(at("remove", &gen_dir))?;
    }
    let staged = StagedGeneration {
        dir: dir.to_path_buf(),
        name,
        names: files.iter().map(|f| f.name.clone()).collect(),
        switched: false,
    };
    // On failure `staged` is dropped, and the generation's directory with it.
    write_all_or_nothing(&gen_dir, files)?;
    Ok(staged)
}

impl StagedGeneration {
    /// Switch `..data` to this generation and link every name to it; then remove older
    /// generations (all but the previous one) and links of names no longer published.
    /// If the switch fails, `..data` is put back (to the previous generation, or
    /// removed when there was none), the links this switch created are removed, and so
    /// is this generation: the previous files stay as they were.
    pub fn switch(mut self) -> Result<()> {
        let dir = self.dir.clone();
        let previous = std::fs::read_link(dir.join(DATA_LINK)).ok();
        let mut made = Vec::new();
        if let Err(e) = self.link(&mut made) {
            let _ = match &previous {
                Some(p) => swap_link(&dir, DATA_LINK, p),
                None => std::fs::remove_file(dir.join(DATA_LINK)).map_err(at("remove", &dir)),
            };
            for name in made {
                let _ = std::fs::remove_file(dir.join(name));
            }
            let _ = sync_dir(&dir);
            return Err(e);
        }
        self.switched = true;
        // Names no longer published, and generations older than the previous one.
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let entry_name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if entry_name.starts_with(GENERATION_PREFIX) {
                let current = entry_name == self.name;
                let prior = previous.as_deref() == Some(Path::new(&entry_name));
                if !current && !prior {
                    let _ = std::fs::remove_dir_all(&path);
                }
            } else if !entry_name.starts_with("..") && !self.names.contains(&entry_name) {
                let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
                if is_link {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let _ = sync_dir(&dir);
        Ok(())
    }

    /// `..data` to this generation, then each name's link; `made`: the names that had
    /// no entry before.
    fn link(&self, made: &mut Vec<String>) -> Result<()> {
        swap_link(&self.dir, DATA_LINK, Path::new(&self.name))?;
        for name in &self.names {
            let path = self.dir.join(name);
            let target = Path::new(DATA_LINK).join(name);
            if std::fs::read_link(&path).ok().as_deref() != Some(&target) {
                let existed = std::fs::symlink_metadata(&path).is_ok();
                swap_link(&self.dir, name, &target)?;
                if !existed {
                    made.push(name.clone());
                }
            }
        }
        sync_dir(&self.dir)
    }
}

impl Drop for StagedGeneration {
    fn drop(&mut self) {
        if !self.switched {
            let _ = std::fs::remove_dir_all(self.dir.join(&self.name));
        }
    }
}

/// Point `dir/name` at `target` by renaming a fresh symlink over it; on failure the
/// fresh symlink is removed.
fn swap_link(dir: &Path, name: &str, target: &Path) -> Result<()> {
    let tmp = temp_path(dir, name);
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(at("remove", &tmp)(e)),
        _ => {}
    }
    std::os::unix::fs::symlink(target, &tmp).map_err(at("link", &tmp))?;
    let path = dir.join(name);
    std::fs::rename(&tmp, &path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        at("rename to", &path)(e)
    })
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

    fn copy(from: &Path, dir: &Path, name: &str, mode: u32) -> Result<()> {
        let mut staged = Staged::new();
        staged.copy(from, dir, name, mode)?;
        staged.commit().map(drop)
    }

    #[test]
    fn copies_with_the_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("src");
        std::fs::write(&from, "binary").unwrap();
        let bin = dir.path().join("bin");
        copy(&from, &bin, "tool", 0o555).unwrap();
        assert_eq!(std::fs::read(bin.join("tool")).unwrap(), b"binary");
        assert_eq!(mode(&bin.join("tool")), 0o555);
        assert!(!temp_path(&bin, "tool").exists());
        assert!(copy(&dir.path().join("missing"), &bin, "x", 0o555).is_err());
        assert!(!temp_path(&bin, "x").exists() && !bin.join("x").exists());
        // The directory a failed copy created is removed again.
        let other = dir.path().join("a/b");
        assert!(copy(&dir.path().join("missing"), &other, "x", 0o555).is_err());
        assert!(!dir.path().join("a").exists());
    }

    /// The names under `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A set staged across directories is in place only after the commit; dropped
    /// before it, nothing is left, not even the directories it created.
    #[test]
    fn a_staged_set_is_all_in_place_or_all_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (files, env) = (dir.path().join("files"), dir.path().join("env"));
        std::fs::create_dir(&files).unwrap();
        let mut staged = Staged::new();
        staged
            .files(&files, &[FileOut::new("a", "one", 0o400)])
            .unwrap();
        staged
            .files(&env, &[FileOut::new("env.json", "{}", 0o400)])
            .unwrap();
        assert_eq!(names(&files), ["..tmp.a"], "staged, not in place");
        drop(staged);
        assert!(
            names(&files).is_empty() && !env.exists(),
            "dropped: all gone"
        );

        // A directory at a target fails while staging, before anything is renamed.
        std::fs::create_dir_all(env.join("env.json/x")).unwrap();
        let mut staged = Staged::new();
        staged
            .files(&files, &[FileOut::new("a", "one", 0o400)])
            .unwrap();
        let e = staged
            .files(&env, &[FileOut::new("env.json", "{}", 0o400)])
            .unwrap_err();
        assert!(e.to_string().contains("env.json"), "{e}");
        drop(staged);
        assert!(names(&files).is_empty());
        assert_eq!(names(&env), ["env.json"]);
        std::fs::remove_dir_all(&env).unwrap();

        let mut staged = Staged::new();
        staged
            .files(&files, &[FileOut::new("a", "one", 0o400)])
            .unwrap();
        staged
            .files(&env, &[FileOut::new("env.json", "{}", 0o400)])
            .unwrap();
        let committed = staged.commit().unwrap();
        assert_eq!(names(&files), ["a"]);
        assert_eq!(names(&env), ["env.json"]);
        // undone (a later step failed): what it put in place goes, with env/
        committed.undo();
        assert!(names(&files).is_empty() && !env.exists());
    }

    /// A rename that fails in the middle of a commit (here: a directory appeared at
    /// the second target after staging) takes back the renames before it and removes
    /// the temp files after it.
    #[test]
    fn a_commit_that_fails_half_way_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut staged = Staged::new();
        staged
            .files(
                d,
                &[
                    FileOut::new("a", "one", 0o400),
                    FileOut::new("b", "two", 0o400),
                    FileOut::new("c", "three", 0o400),
                ],
            )
            .unwrap();
        std::fs::create_dir_all(d.join("b/in-the-way")).unwrap();
        let e = staged.commit().unwrap_err();
        assert!(e.to_string().contains("rename to"), "{e}");
        assert_eq!(names(d), ["b"], "only the directory in the way is left");
    }

    /// What a killed run left is removed: temp files, and generations never switched
    /// to; the current and previous generations and the files stay.
    #[test]
    fn leftovers_of_a_killed_run_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        publish(d, 1, &[FileOut::new("a", "1", 0o400)]).unwrap();
        publish(d, 2, &[FileOut::new("a", "2", 0o400)]).unwrap();
        std::fs::create_dir(d.join("..gen.3")).unwrap();
        std::fs::write(d.join("..gen.3/a"), "3").unwrap();
        std::fs::write(temp_path(d, "a"), "3").unwrap();
        remove_leftovers(d);
        assert_eq!(names(d), ["..data", "..gen.1", "..gen.2", "a"]);
        assert_eq!(read(d, "a"), "2");

        let plain = tempfile::tempdir().unwrap();
        let p = plain.path();
        std::fs::write(p.join("db"), "kept").unwrap();
        std::fs::write(temp_path(p, "db"), "value").unwrap();
        std::fs::create_dir(p.join("..gen.1")).unwrap();
        remove_leftovers(p);
        assert_eq!(names(p), ["db"]);
        remove_leftovers(&p.join("missing"));
    }

    /// A publication that fails at the switch (a directory is in the way of a name's
    /// link) keeps the previous generation current and removes its own.
    #[test]
    fn a_failed_publication_keeps_the_previous_generation() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let one = [FileOut::new("a", "1", 0o400)];
        publish(d, 1, &one).unwrap();
        std::fs::create_dir_all(d.join("b/in-the-way")).unwrap();
        let two = [FileOut::new("a", "2", 0o400), FileOut::new("b", "2", 0o400)];
        assert!(publish(d, 2, &two).is_err());
        assert_eq!(current_generation(d), Some(1));
        assert_eq!(read(d, "a"), "1");
        assert_eq!(names(d), ["..data", "..gen.1", "a", "b"]);

        // The first publication: no `..data` is left either, nor a new name's link.
        let first = tempfile::tempdir().unwrap();
        let f = first.path();
        std::fs::create_dir_all(f.join("b/in-the-way")).unwrap();
        assert!(publish(f, 1, &two).is_err());
        assert_eq!(names(f), ["b"]);
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
