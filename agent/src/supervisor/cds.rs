//! Class-data sharing (CDS) archives for the JobManager and TaskManager JVMs, made and kept by
//! the agent per Flink distribution and JVM.
//!
//! Why: after a crash, the new JobManager's JVM start (loading and verifying some 6,500 classes)
//! is most of the time before its REST API answers, and every second of it is recovery time.
//! Mapping a CDS archive of those classes cut a JobManager's exec → REST answering from 10.2 s
//! to 7.0 s (median of 4 alternating starts each, on the 2-core test machine under load).
//!
//! How (Java 17 has no automatic archive, and `-XX:ArchiveClassesAtExit` needs an orderly exit,
//! which a crashed JVM never has): a launch without an archive records the classes it loads
//! (`-XX:DumpLoadedClassList`, which the JVM writes as it loads them, and a class-loading log for
//! the classes that list leaves out: see [`unregistered`]); once that process is healthy and has
//! settled, the agent dumps a static archive from the list in the background at the lowest
//! priority (`java -Xshare:dump`, one at a time), writes it atomically, and every later launch
//! maps it (`-XX:SharedArchiveFile`), through Flink's scripts (`JVM_ARGS`) or as the learned JVM
//! command.
//!
//! Safety: the JVM checks an archive against its own build and the class path and runs without
//! it on any mismatch (`-Xshare:auto`, the default); an archive is keyed by the process kind,
//! the JVM (`libjvm.so`) and the distribution's `lib/`, so an upgrade of either makes a new one;
//! a process that mapped an archive and died before it was healthy drops it (it is made again);
//! a dump that fails leaves a marker with its output and is not retried under that key.

use super::{Kind, LaunchSpec};
use sha2::{Digest, Sha256};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

mod unregistered;

/// How long a recording process runs healthy before its class list is dumped: the classes of
/// its first minutes (the TaskManager registering, a job deployed) belong in the archive.
pub const SETTLE: Duration = Duration::from_secs(30);

/// What a launch does about class-data sharing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cds {
    /// Map this archive.
    Map(PathBuf),
    /// Record the classes loaded into a class list, and every class load into a log.
    Record { classlist: PathBuf, log: PathBuf },
}

/// The option that writes the class-loading log; `filecount=0`: one file, truncated when the
/// JVM starts (a rotated-away older log would mix two processes' class addresses).
const LOG_OPTION: &str = "-Xlog:class+load=debug:file=";

impl Cds {
    /// The JVM options that do it.
    pub fn options(&self) -> Vec<String> {
        match self {
            Cds::Map(path) => vec![format!("-XX:SharedArchiveFile={}", path.display())],
            Cds::Record { classlist, log } => vec![
                format!("-XX:DumpLoadedClassList={}", classlist.display()),
                format!("{LOG_OPTION}{}::filecount=0", log.display()),
            ],
        }
    }
}

/// True for the options [`Cds::options`] gives: they belong to one launch, not to the learned
/// JVM command.
pub fn is_cds_option(arg: &str) -> bool {
    arg.starts_with("-XX:SharedArchiveFile=")
        || arg.starts_with("-XX:DumpLoadedClassList=")
        || arg.starts_with(LOG_OPTION)
}

/// The files of one kind's archive under one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    pub kind: Kind,
    /// `<state_dir>/flink-conf.jvm/<kind>-<key>.jsa`, readable by Flink's user.
    pub archive: PathBuf,
    /// `<log_dir>/<kind>.classlist`: Flink's user writes it.
    pub classlist: PathBuf,
    /// `<log_dir>/<kind>.classload.log`: the recording JVM's class-loading log.
    pub log: PathBuf,
    /// `<kind>-<key>.failed`: the dump's output; no more attempts under this key.
    pub failed: PathBuf,
}

impl Archive {
    /// The archive of `kind` for what `spec` launches now. None for ZooKeeper, and when a path
    /// holds white space (the scripts split `JVM_ARGS` on it).
    pub fn of(spec: &LaunchSpec, kind: Kind) -> io::Result<Option<Archive>> {
        if kind == Kind::ZooKeeper {
            return Ok(None);
        }
        let dir = super::jvm_command::cache_dir(spec);
        let key = key(spec, kind)?;
        let archive = dir.join(format!("{}-{}.jsa", kind.name(), &key[..16]));
        let classlist = spec.log_dir.join(format!("{}.classlist", kind.name()));
        let log = spec.log_dir.join(format!("{}.classload.log", kind.name()));
        if [&archive, &classlist, &log]
            .iter()
            .any(|p| p.to_string_lossy().contains(char::is_whitespace))
        {
            return Ok(None);
        }
        Ok(Some(Archive {
            kind,
            failed: archive.with_extension("failed"),
            archive,
            classlist,
            log,
        }))
    }

    /// What the next launch does: map the archive if there is one, record the classes unless
    /// a dump failed under this key.
    pub fn plan(&self) -> Option<Cds> {
        if self.archive.is_file() {
            Some(Cds::Map(self.archive.clone()))
        } else if self.failed.exists() {
            None
        } else {
            Some(Cds::Record {
                classlist: self.classlist.clone(),
                log: self.log.clone(),
            })
        }
    }

    /// Drops the archive (a JVM that mapped it died before it was healthy): the next launch
    /// records the classes again.
    pub fn forget(&self) {
        match fs::remove_file(&self.archive) {
            Ok(()) => log::warn!(
                "dropped the {} class-data archive {}: a JVM that mapped it died before it was healthy",
                self.kind.name(),
                self.archive.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("cannot remove {}: {e}", self.archive.display()),
        }
    }

    /// Dumps the archive from the recorded class list, with lines for the unregistered classes
    /// in the class-loading log whose jars are files of `flink_uid` (the user the JVMs run as),
    /// using `java` and `classpath` (the JVM command's); then removes the recordings and this
    /// kind's archives of other keys. None when the archive exists already. Blocking: a dump
    /// takes seconds to tens of seconds of one core.
    pub fn make(
        &self,
        java: &str,
        classpath: &str,
        flink_uid: u32,
    ) -> Result<Option<MadeArchive>, CdsError> {
        // One dump at a time: each takes a core for its duration.
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        if self.archive.is_file() {
            // Another recording launch of this kind got there first.
            self.remove_recordings();
            return Ok(None);
        }
        let started = Instant::now();
        let dir = self.archive.parent().unwrap_or(Path::new("/"));
        fs::create_dir_all(dir).map_err(|e| CdsError::Io(dir.display().to_string(), e))?;
        // The log is Flink's user's file, the dump runs as the agent's user and its archive is
        // world-readable: only that user's own jars get in (not a planted link to another's).
        let suffix = fs::File::open(&self.log).and_then(|log| {
            unregistered::suffix(io::BufReader::new(log), |jar| owned_file(jar, flink_uid))
        });
        let suffix = match suffix {
            Ok(suffix) => suffix,
            Err(e) => {
                log::warn!("cannot read {}: {e}", self.log.display());
                unregistered::Suffix::default()
            }
        };
        let mut unregistered = 0;
        let dumped = if suffix.classes == 0 {
            self.dump(java, classpath, &self.classlist)
        } else {
            // The recorded list is Flink's user's file: the whole list goes in the agent's dir.
            // Only the dump reads it, and it is gone after: no fsync.
            let full = self.archive.with_extension("classlist");
            let written = fs::File::open(&self.classlist).and_then(|mut list| {
                let mut out = fs::File::create(&full)?;
                io::copy(&mut list, &mut out)?;
                io::Write::write_all(&mut out, suffix.text.as_bytes())
            });
            written.map_err(|e| CdsError::Io(full.display().to_string(), e))?;
            let dumped = match self.dump(java, classpath, &full) {
                Ok(()) => {
                    unregistered = suffix.classes;
                    Ok(())
                }
                Err(e) => {
                    // Those lines are the agent's reading of a log: never worth the archive.
                    log::warn!(
                        "the {} class-data archive leaves out the classes of Flink's own class \
                         loaders: a dump with them failed ({})",
                        self.kind.name(),
                        e.tail()
                    );
                    self.dump(java, classpath, &self.classlist)
                }
            };
            let _ = fs::remove_file(&full);
            dumped
        };
        if let Err(failed) = dumped {
            let _ = crate::fsutil::write_atomic(&self.failed, failed.output.as_bytes(), 0o644);
            return Err(CdsError::Dump {
                tail: failed.tail(),
                status: failed.status,
            });
        }
        self.remove_recordings();
        self.remove_others(dir);
        give_back_memory();
        Ok(Some(MadeArchive {
            bytes: fs::metadata(&self.archive).map(|m| m.len()).unwrap_or(0),
            unregistered,
            took: started.elapsed(),
        }))
    }

    /// One `java -Xshare:dump` from `list`, published atomically as the archive.
    #[allow(unsafe_code)]
    fn dump(&self, java: &str, classpath: &str, list: &Path) -> Result<(), DumpFailed> {
        use std::os::unix::process::CommandExt;
        let tmp = self.archive.with_extension("jsa.tmp");
        // The dump's output goes to a file, read only if it fails: with a few thousand
        // unregistered classes it can say much, and the agent stays small.
        let out_path = self.archive.with_extension("out");
        let failed = |status: String, output: String| {
            let _ = fs::remove_file(&tmp);
            let _ = fs::remove_file(&out_path);
            Err(DumpFailed { status, output })
        };
        let out = match fs::File::create(&out_path).and_then(|f| Ok((f.try_clone()?, f))) {
            Ok(out) => out,
            Err(e) => return failed("not started".into(), format!("{}: {e}", out_path.display())),
        };
        let mut command = std::process::Command::new("nice");
        command
            .args(["-n", "19", java, "-Xshare:dump"])
            .arg(format!("-XX:SharedClassListFile={}", list.display()))
            .arg(format!("-XX:SharedArchiveFile={}", tmp.display()))
            .args(["-cp", classpath])
            .stdin(std::process::Stdio::null())
            .stdout(out.0)
            .stderr(out.1);
        // SAFETY: prctl(2) only, between fork and exec. The dump is the agent's own work: it
        // ends with the agent (the thread that forked it waits for it until then).
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(io::Error::from)
            });
        }
        let status = match command.status() {
            Ok(status) => status,
            Err(e) => return failed("not started".into(), format!("{java}: {e}")),
        };
        if !status.success() || !tmp.is_file() {
            let text = fs::read(&out_path)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            return failed(status.to_string(), text);
        }
        let _ = fs::remove_file(&out_path);
        publish(&tmp, &self.archive).or_else(|e| {
            failed(
                "not published".into(),
                format!("{}: {e}", self.archive.display()),
            )
        })
    }

    /// The recording launch's class list and log: the archive holds what they said.
    fn remove_recordings(&self) {
        let _ = fs::remove_file(&self.classlist);
        let _ = fs::remove_file(&self.log);
    }

    /// This kind's archives and markers of other keys (an older distribution or JVM).
    fn remove_others(&self, dir: &Path) {
        let prefix = format!("{}-", self.kind.name());
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = name.starts_with(&prefix)
                && (name.ends_with(".jsa")
                    || name.ends_with(".failed")
                    || name.ends_with(".classlist")
                    || name.ends_with(".out")
                    || name.ends_with(".jsa.tmp"));
            if ours && path != self.archive && path != self.failed {
                let _ = fs::remove_file(&path);
            }
        }
    }
}

/// A dump that worked.
#[derive(Debug, Clone, Copy)]
pub struct MadeArchive {
    pub bytes: u64,
    /// Classes in it from Flink's own class loaders (see [`unregistered`]).
    pub unregistered: usize,
    pub took: Duration,
}

/// A dump that did not: the JVM's exit status and output.
#[derive(Debug)]
struct DumpFailed {
    status: String,
    output: String,
}

impl DumpFailed {
    /// The output's last three lines, where the JVM says why.
    fn tail(&self) -> String {
        let tail: Vec<&str> = self.output.lines().rev().take(3).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
    }
}

/// Why no archive was made (logged; the processes run without one).
#[derive(Debug, thiserror::Error)]
pub enum CdsError {
    #[error("{0}: {1}")]
    Io(String, #[source] io::Error),
    #[error("`java -Xshare:dump` failed ({status}): {tail}")]
    Dump { status: String, tail: String },
}

/// Hands the heap the log's reading freed back to the kernel: a dump is a one-off, and the
/// allocator would otherwise keep those megabytes for the agent's life.
#[allow(unsafe_code)]
fn give_back_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim(3) only releases free memory at the top of glibc's heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A regular file (not a link) of user `uid`.
fn owned_file(path: &Path, uid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file() && m.uid() == uid)
}

/// fsync, world-readable (Flink's user maps it), rename, fsync the directory.
fn publish(tmp: &Path, path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let file = fs::File::open(tmp)?;
    file.set_permissions(fs::Permissions::from_mode(0o644))?;
    file.sync_all()?;
    fs::rename(tmp, path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The class path a JVM command runs with (`-classpath` / `-cp` / `--class-path`).
pub fn classpath(argv: &[String]) -> Option<&str> {
    argv.iter()
        .position(|a| a == "-classpath" || a == "-cp" || a == "--class-path")
        .and_then(|i| argv.get(i + 1))
        .map(String::as_str)
}

/// Hash of what an archive depends on: the kind, the JVM (its `libjvm.so`: path, size and
/// mtime; a JDK update in place changes them) and the listing of the distribution's `lib/`.
fn key(spec: &LaunchSpec, kind: Kind) -> io::Result<String> {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    // v2: the archive holds the classes of Flink's own class loaders (v1 archives are made again).
    field(b"flink-agent cds v2");
    field(kind.name().as_bytes());
    let libjvm = spec.java_home.join("lib/server/libjvm.so");
    let mut files = vec![libjvm];
    let mut lib: Vec<PathBuf> = fs::read_dir(spec.flink_home.join("lib"))?
        .flatten()
        .map(|e| e.path())
        .collect();
    lib.sort();
    files.extend(lib);
    for path in files {
        field(path.as_os_str().as_encoded_bytes());
        if let Ok(meta) = fs::metadata(&path) {
            let mtime = meta
                .modified()?
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            field(&meta.len().to_le_bytes());
            field(&mtime.to_le_bytes());
        }
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(root: &Path) -> LaunchSpec {
        let flink_home = root.join("flink");
        let java_home = root.join("java");
        fs::create_dir_all(flink_home.join("lib")).unwrap();
        fs::create_dir_all(java_home.join("lib/server")).unwrap();
        fs::write(flink_home.join("lib/flink-dist.jar"), b"dist").unwrap();
        fs::write(java_home.join("lib/server/libjvm.so"), b"jvm").unwrap();
        fs::create_dir_all(root.join("log")).unwrap();
        LaunchSpec {
            java_home,
            ..super::super::test_spec(flink_home, root.join("state/flink-conf"), root.join("log"))
        }
    }

    #[test]
    fn records_first_then_maps_the_archive_and_a_failed_dump_stops_both() {
        let t = tempfile::tempdir().unwrap();
        let s = spec(t.path());
        let a = Archive::of(&s, Kind::JobManager).unwrap().unwrap();
        assert_eq!(
            a.plan(),
            Some(Cds::Record {
                classlist: t.path().join("log/jobmanager.classlist"),
                log: t.path().join("log/jobmanager.classload.log"),
            })
        );
        fs::create_dir_all(a.archive.parent().unwrap()).unwrap();
        fs::write(&a.archive, b"jsa").unwrap();
        assert_eq!(a.plan(), Some(Cds::Map(a.archive.clone())));
        assert!(a.archive.starts_with(t.path().join("state/flink-conf.jvm")));
        a.forget();
        fs::write(&a.failed, b"dump output").unwrap();
        assert_eq!(a.plan(), None);
        assert_eq!(Archive::of(&s, Kind::ZooKeeper).unwrap(), None);
    }

    #[test]
    fn a_new_jvm_or_distribution_is_a_new_archive() {
        let t = tempfile::tempdir().unwrap();
        let s = spec(t.path());
        let before = Archive::of(&s, Kind::TaskManager).unwrap().unwrap().archive;
        assert_ne!(
            before,
            Archive::of(&s, Kind::JobManager).unwrap().unwrap().archive
        );
        fs::write(s.java_home.join("lib/server/libjvm.so"), b"jvm 17.0.99").unwrap();
        let after_jvm = Archive::of(&s, Kind::TaskManager).unwrap().unwrap().archive;
        assert_ne!(before, after_jvm);
        fs::write(s.flink_home.join("lib/flink-s3.jar"), b"plugin").unwrap();
        assert_ne!(
            after_jvm,
            Archive::of(&s, Kind::TaskManager).unwrap().unwrap().archive
        );
    }

    #[test]
    fn options_are_recognised_and_the_class_path_is_found() {
        let record = Cds::Record {
            classlist: "/l".into(),
            log: "/g".into(),
        };
        for cds in [Cds::Map("/a.jsa".into()), record] {
            assert!(cds.options().iter().all(|o| is_cds_option(o)));
        }
        assert!(!is_cds_option("-XX:+UseG1GC"));
        let argv: Vec<String> = ["/java", "-Xmx1g", "-classpath", "/a.jar:/b.jar", "Main"]
            .map(String::from)
            .to_vec();
        assert_eq!(classpath(&argv), Some("/a.jar:/b.jar"));
        assert_eq!(classpath(&argv[..2]), None);
    }

    #[test]
    fn only_the_flink_users_own_jars_go_into_an_archive() {
        let t = tempfile::tempdir().unwrap();
        let me = nix::unistd::Uid::current().as_raw();
        let jar = t.path().join("flink-rpc-pekko_1.jar");
        fs::write(&jar, b"jar").unwrap();
        let link = t.path().join("flink-rpc-pekko_2.jar");
        std::os::unix::fs::symlink(&jar, &link).unwrap();
        assert!(owned_file(&jar, me));
        assert!(!owned_file(&jar, me + 1), "another user's file");
        assert!(!owned_file(&link, me), "a link");
        assert!(!owned_file(&t.path().join("gone.jar"), me));
    }

    #[test]
    fn paths_with_white_space_get_no_archive() {
        let t = tempfile::tempdir().unwrap();
        let mut s = spec(t.path());
        s.log_dir = t.path().join("my logs");
        assert_eq!(Archive::of(&s, Kind::JobManager).unwrap(), None);
    }
}
