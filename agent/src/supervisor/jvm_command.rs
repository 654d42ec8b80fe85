//! The JVM command line of a Flink process, learned once per rendered config and reused.
//!
//! Flink's `bin/jobmanager.sh` / `bin/taskmanager.sh` spend seconds of CPU before the JVM starts:
//! `config.sh` runs a helper JVM (BashJavaUtils) to derive memory options and dynamic properties
//! from the config, and another to read the Java version. The result only depends on the conf
//! dir, the distribution, the Java installation, the user and the host, so it is the same for
//! every restart under one rendered config — exactly the restarts that decide the recovery time
//! after a crash.
//!
//! Instead of re-implementing the scripts (and drifting from them with every Flink release), the
//! agent launches through the script as before and, once that process has proven itself healthy,
//! reads what the script finally `exec`ed from `/proc/<pid>/cmdline` and `/proc/<pid>/environ`
//! (the pid is the JVM's: the scripts `exec`). Later launches under the same [`key`] exec that
//! argv and environment directly; any change of the inputs changes the key, so the script runs
//! (and the command is learned) again. A direct launch that dies before becoming healthy drops
//! the entry, so a stale command cannot keep a process down.
//!
//! Per launch the TaskManager gets its own `-D taskmanager.resource-id=…`; the scripts append
//! such arguments after everything they compute, so they are stripped when learning and
//! appended again at each launch.

use super::{Kind, LaunchSpec};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// A learned command: the program, its arguments (without per-launch extras) and the complete
/// environment the script gave the JVM, valid while the inputs hash to `key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JvmCommand {
    pub key: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// Why a process's command line was not learned (logged; the script keeps being used).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LearnError {
    #[error("its command line is not valid UTF-8")]
    NotUtf8,
    #[error("it is not a JVM started by absolute path (argv[0] = {0:?})")]
    NotJava(String),
    #[error("its command line does not end with the per-launch arguments {0:?}")]
    MissingExtraArgs(Vec<String>),
}

/// Where the learned commands live: beside the rendered conf dir (`<state_dir>/flink-conf` →
/// `<state_dir>/flink-conf.jvm/<kind>.json`), outside it so they never count as config.
pub fn cache_path(spec: &LaunchSpec, kind: Kind) -> PathBuf {
    cache_dir(spec).join(format!("{}.json", kind.name()))
}

/// `<state_dir>/flink-conf.jvm`: what the agent keeps about the JVMs it launches (the learned
/// commands, the class-data archives of [`super::cds`]).
pub fn cache_dir(spec: &LaunchSpec) -> PathBuf {
    let mut dir = spec.conf_dir.clone().into_os_string();
    dir.push(".jvm");
    PathBuf::from(dir)
}

/// Hash of everything the scripts' result depends on: the process kind, the paths the agent
/// passes (conf, log dir, Flink and Java homes), the user, the host name (part of the log file
/// name), every file of the conf dir, and the file listings of the distribution's `bin/` and
/// `lib/` (the class path is built from `lib/`; an upgrade in place changes sizes or mtimes).
pub fn key(spec: &LaunchSpec, kind: Kind) -> io::Result<String> {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(b"flink-agent jvm-command v1");
    field(kind.name().as_bytes());
    for path in [
        &spec.flink_home,
        &spec.java_home,
        &spec.conf_dir,
        &spec.log_dir,
    ] {
        field(path.as_os_str().as_encoded_bytes());
    }
    field(spec.user.as_deref().unwrap_or("").as_bytes());
    field(fs::read("/proc/sys/kernel/hostname")?.trim_ascii());
    for (name, path) in sorted_files(&spec.conf_dir)? {
        field(name.as_bytes());
        field(&fs::read(path)?);
    }
    for dir in ["bin", "lib"] {
        for (name, path) in sorted_files(&spec.flink_home.join(dir))? {
            let meta = fs::metadata(&path)?;
            let mtime = meta
                .modified()?
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            field(name.as_bytes());
            field(&meta.len().to_le_bytes());
            field(&mtime.to_le_bytes());
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// The regular files of `dir` by name, without the hidden temp files of atomic writes.
fn sorted_files(dir: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && entry.file_type()?.is_file() {
            files.push((name, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// The learned command for `key`, if there is one.
pub fn load(path: &Path, key: &str) -> Option<JvmCommand> {
    let cmd: JvmCommand = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
    (cmd.key == key).then_some(cmd)
}

pub fn store(path: &Path, cmd: &JvmCommand) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(cmd).map_err(io::Error::other)?;
    // The environment may hold what the operator put into Flink's; not world-readable.
    crate::fsutil::write_atomic(path, &json, 0o600)
}

/// Drops a learned command (a direct launch failed: the script decides again).
pub fn forget(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("cannot remove {}: {e}", path.display()),
    }
}

/// Builds the command from a running JVM's `/proc/<pid>/cmdline` and `/proc/<pid>/environ`
/// (NUL-terminated strings), without the trailing `extra_args` of that launch.
pub fn learn(
    key: String,
    cmdline: &[u8],
    environ: &[u8],
    extra_args: &[String],
) -> Result<JvmCommand, LearnError> {
    let mut argv = split_nul(cmdline)?;
    let java = argv.first().cloned().unwrap_or_default();
    if !java.starts_with('/') || !java.ends_with("/java") {
        return Err(LearnError::NotJava(java));
    }
    let Some(kept) = argv
        .len()
        .checked_sub(extra_args.len())
        .filter(|&n| n > 1 && argv[n..] == *extra_args)
    else {
        return Err(LearnError::MissingExtraArgs(extra_args.to_vec()));
    };
    argv.truncate(kept);
    // The JIT and class-data options belong to that launch (the agent decides them per launch).
    argv.retain(|a| !super::process::is_launch_option(a));
    let env = split_nul(environ)?
        .into_iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    Ok(JvmCommand { key, argv, env })
}

fn split_nul(bytes: &[u8]) -> Result<Vec<String>, LearnError> {
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    bytes
        .split(|b| *b == 0)
        .map(|s| String::from_utf8(s.to_vec()).map_err(|_| LearnError::NotUtf8))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `bin/taskmanager.sh start-foreground -D taskmanager.resource-id=tm-1` execs (Flink
    /// 2.3, abridged to one of each kind of argument).
    const TM_CMDLINE: &[u8] = b"/usr/lib/jvm/java-17-openjdk-amd64/bin/java\0-Xmx536870902\0-XX:+UseG1GC\0\
-Dlog.file=/var/log/flink/flink-flink-taskexecutor-0-node1.log\0-classpath\0/opt/flink/lib/flink-dist-2.3.0.jar:::\0\
org.apache.flink.runtime.taskexecutor.TaskManagerRunner\0--configDir\0/var/lib/flink-agent/flink-conf\0\
-D\0taskmanager.memory.network.min=134217730b\0-D\0taskmanager.resource-id=tm-1\0";

    fn extra(id: &str) -> Vec<String> {
        vec!["-D".into(), format!("taskmanager.resource-id={id}")]
    }

    #[test]
    fn learns_the_jvm_argv_without_the_per_launch_arguments_and_the_whole_environment() {
        let cmd = learn(
            "k".into(),
            TM_CMDLINE,
            b"PATH=/usr/bin:/bin\0FLINK_CONF_DIR=/var/lib/flink-agent/flink-conf\0EMPTY=\0A=b=c\0",
            &extra("tm-1"),
        )
        .expect("learned");
        assert_eq!(cmd.argv.len(), 11);
        assert_eq!(cmd.argv[0], "/usr/lib/jvm/java-17-openjdk-amd64/bin/java");
        assert_eq!(
            cmd.argv[9..],
            ["-D", "taskmanager.memory.network.min=134217730b"]
        );
        assert_eq!(
            cmd.env,
            [
                ("PATH".to_string(), "/usr/bin:/bin".to_string()),
                (
                    "FLINK_CONF_DIR".into(),
                    "/var/lib/flink-agent/flink-conf".into()
                ),
                ("EMPTY".into(), String::new()),
                ("A".into(), "b=c".into()),
            ]
        );
    }

    #[test]
    fn refuses_what_is_not_the_jvm_the_script_execed_for_this_launch() {
        assert_eq!(
            learn("k".into(), TM_CMDLINE, b"", &extra("tm-2")),
            Err(LearnError::MissingExtraArgs(extra("tm-2")))
        );
        // Still the script (it has not exec'd the JVM yet).
        assert_eq!(
            learn(
                "k".into(),
                b"/bin/bash\0/opt/flink/bin/taskmanager.sh\0start-foreground\0",
                b"",
                &[]
            ),
            Err(LearnError::NotJava("/bin/bash".into()))
        );
        assert_eq!(
            learn("k".into(), b"java\0-version\0", b"", &[]),
            Err(LearnError::NotJava("java".into()))
        );
        assert_eq!(
            learn("k".into(), b"/usr/bin/java\0\xff\0", b"", &[]),
            Err(LearnError::NotUtf8)
        );
        // Nothing but the extras left.
        assert!(learn(
            "k".into(),
            b"/usr/bin/java\0-D\0taskmanager.resource-id=tm-1\0",
            b"",
            &extra("tm-1")
        )
        .is_err());
    }

    #[test]
    fn jit_and_class_data_options_are_not_learned() {
        let cmdline = [
            b"/usr/lib/jvm/java-17-openjdk-amd64/bin/java\0-XX:Tier4InvocationThreshold=50000\0-XX:Tier4BackEdgeThreshold=400000\0".as_slice(),
            b"-XX:DumpLoadedClassList=/var/log/flink/taskmanager.classlist\0-Xlog:class+load=debug:file=/var/log/flink/taskmanager.classload.log::filecount=0\0-Xmx536870902\0",
            b"-classpath\0/opt/flink/lib/flink-dist-2.3.0.jar\0org.apache.flink.runtime.taskexecutor.TaskManagerRunner\0-D\0taskmanager.resource-id=tm-1\0",
        ]
        .concat();
        let cmd = learn("k".into(), &cmdline, b"", &extra("tm-1")).expect("learned");
        assert_eq!(
            cmd.argv,
            [
                "/usr/lib/jvm/java-17-openjdk-amd64/bin/java",
                "-Xmx536870902",
                "-classpath",
                "/opt/flink/lib/flink-dist-2.3.0.jar",
                "org.apache.flink.runtime.taskexecutor.TaskManagerRunner"
            ]
        );
    }

    fn spec(dir: &Path) -> LaunchSpec {
        let home = dir.join("flink");
        for sub in ["bin", "lib", "conf"] {
            fs::create_dir_all(home.join(sub)).expect("dirs");
        }
        fs::write(home.join("lib/flink-dist.jar"), b"v1").expect("jar");
        fs::write(home.join("bin/config.sh"), b"#!/bin/sh").expect("script");
        let conf_dir = dir.join("state/flink-conf");
        fs::create_dir_all(&conf_dir).expect("conf");
        fs::write(conf_dir.join("config.yaml"), b"rest.port: 8081\n").expect("config");
        super::super::test_spec(home, conf_dir, dir.join("log"))
    }

    #[test]
    fn the_key_changes_with_every_input_of_the_scripts_and_only_then() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = spec(dir.path());
        let jm = key(&spec, Kind::JobManager).expect("key");
        assert_eq!(jm, key(&spec, Kind::JobManager).expect("key"));
        assert_ne!(jm, key(&spec, Kind::TaskManager).expect("key"));
        // Temp files of an atomic write in progress are not config.
        fs::write(spec.conf_dir.join(".config.yaml.tmp.1"), b"x").expect("tmp");
        assert_eq!(jm, key(&spec, Kind::JobManager).expect("key"));

        let other_user = LaunchSpec {
            user: Some("flink".into()),
            ..spec.clone()
        };
        assert_ne!(jm, key(&other_user, Kind::JobManager).expect("key"));
        fs::write(spec.conf_dir.join("config.yaml"), b"rest.port: 8082\n").expect("config");
        let changed_conf = key(&spec, Kind::JobManager).expect("key");
        assert_ne!(jm, changed_conf);
        fs::write(spec.flink_home.join("lib/flink-dist.jar"), b"v2 longer").expect("jar");
        assert_ne!(changed_conf, key(&spec, Kind::JobManager).expect("key"));
    }

    #[test]
    fn a_stored_command_is_only_loaded_under_its_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = spec(dir.path());
        let path = cache_path(&spec, Kind::TaskManager);
        assert_eq!(
            path,
            dir.path().join("state/flink-conf.jvm/taskmanager.json")
        );
        assert_eq!(load(&path, "k1"), None);
        let cmd = learn("k1".into(), TM_CMDLINE, b"A=1\0", &extra("tm-1")).expect("learned");
        store(&path, &cmd).expect("store");
        assert_eq!(load(&path, "k1"), Some(cmd));
        assert_eq!(load(&path, "k2"), None);
        forget(&path);
        assert_eq!(load(&path, "k1"), None);
        forget(&path); // already gone: fine
    }
}
