//! Class-list lines for the classes a JVM defined through Flink's own class loaders.
//!
//! Why: Flink loads its RPC system (Pekko, and the Scala library inside it: some 2,000 classes
//! and about 1.3 s of each JVM's start) through a class loader of its own, from a jar it
//! extracts anew at every start, and Java 17's class list (`-XX:DumpLoadedClassList`) leaves
//! out the classes of such loaders. A static archive can still hold them as "unregistered"
//! classes: a class-list line naming the class's jar and its super class and interfaces by the
//! ids of other lines. At run time the JVM takes the archived class when any class loader
//! defines a class of that name with the same bytes, from whatever path.
//!
//! The JVM's class-loading log (`-Xlog:class+load=debug`) names every class it loads with its
//! source and defining loader and gives the addresses of the class, its super class and its
//! interfaces (one message per class, its lines never interleaved with another's): enough to
//! write those lines, in load order, which puts every super class before its subclasses.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, Seek};
use std::path::Path;

/// Lines to append to a class list.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Suffix {
    pub text: String,
    /// How many unregistered classes the lines add.
    pub classes: usize,
}

/// What an address held when a class referred to it.
enum Seen {
    /// Defined by the boot, platform or application loader: the class list can name it.
    Builtin(String),
    /// An unregistered class with a line of its own.
    Listed(u32),
    /// Anything else (its subclasses cannot be listed either).
    Unlisted,
}

/// The lines for the unregistered classes in `log` (a class-loading log at debug level) whose
/// jar passes `usable`: first an id line for each built-in class they extend or implement, then
/// one line per class, each naming its super class and interfaces by id. A class whose super
/// class or an interface cannot be named is left out (it loads as before).
///
/// A JVM's log is megabytes and names some 10,000 classes, and the agent stays small: it is
/// read twice, line by line, the first time for the addresses such classes refer to, the
/// second keeping only the classes at those addresses.
pub fn suffix<R: BufRead + Seek>(mut log: R, usable: impl Fn(&Path) -> bool) -> io::Result<Suffix> {
    let mut wanted: HashSet<u64> = HashSet::new();
    each_class(&mut log, |class| {
        if class.jar().is_some() {
            wanted.insert(class.sup);
            wanted.extend(&class.interfaces);
        }
    })?;
    log.rewind()?;
    let mut seen: HashMap<u64, Seen> = HashMap::new();
    let mut builtin_ids: HashMap<String, u32> = HashMap::new();
    let mut listed_names: HashSet<String> = HashSet::new();
    let (mut head, mut tail) = (String::new(), String::new());
    let mut next_id = 0u32;
    let mut classes = 0;
    each_class(&mut log, |class| {
        let name = || class.name.replace('.', "/");
        if class.builtin {
            if wanted.contains(&class.klass) && !class.hidden() {
                seen.insert(class.klass, Seen::Builtin(name()));
            } else {
                seen.remove(&class.klass);
            }
            return;
        }
        let name = name();
        // The first of two classes of one name (two loaders of one jar) is the one listed.
        let jar = class.jar().filter(|jar| usable(Path::new(jar)));
        let (Some(jar), false) = (jar, listed_names.contains(&name)) else {
            seen.insert(class.klass, Seen::Unlisted);
            return;
        };
        let mut refs = Vec::new();
        for addr in std::iter::once(class.sup).chain(class.interfaces.iter().copied()) {
            let id = match seen.get(&addr) {
                Some(Seen::Listed(id)) => *id,
                Some(Seen::Builtin(builtin)) => {
                    *builtin_ids.entry(builtin.clone()).or_insert_with(|| {
                        next_id += 1;
                        head.push_str(&format!("{builtin} id: {next_id}\n"));
                        next_id
                    })
                }
                _ => {
                    seen.insert(class.klass, Seen::Unlisted);
                    return;
                }
            };
            refs.push(id);
        }
        next_id += 1;
        tail.push_str(&format!("{name} id: {next_id} super: {}", refs[0]));
        if refs.len() > 1 {
            tail.push_str(" interfaces:");
            for id in &refs[1..] {
                tail.push_str(&format!(" {id}"));
            }
        }
        tail.push_str(&format!(" source: {jar}\n"));
        if wanted.contains(&class.klass) {
            seen.insert(class.klass, Seen::Listed(next_id));
        }
        listed_names.insert(name);
        classes += 1;
    })?;
    head.push_str(&tail);
    Ok(Suffix {
        text: head,
        classes,
    })
}

/// One class load: the info line (`<name> source: <source>`) and the debug line after it
/// (` klass: A super: B interfaces: C D loader: [...] bytes: …`), which the JVM writes as one
/// message.
struct Class {
    name: String,
    source: String,
    klass: u64,
    sup: u64,
    interfaces: Vec<u64>,
    builtin: bool,
}

impl Class {
    /// A hidden class (`Host$$Lambda$1/0x…`) can be no one's super class or interface; a name
    /// with white space is no class's (and would break the line).
    fn hidden(&self) -> bool {
        self.name.contains('/') || self.name.contains(char::is_whitespace)
    }

    /// The jar a class of Flink's own class loaders came from.
    fn jar(&self) -> Option<&str> {
        self.source
            .strip_prefix("file:")
            .filter(|p| p.ends_with(".jar") && !p.contains(char::is_whitespace))
            .filter(|_| !self.builtin && !self.hidden())
    }
}

/// Calls `f` for every class load in `log`, in order.
fn each_class(log: &mut impl BufRead, mut f: impl FnMut(Class)) -> io::Result<()> {
    let mut pending: Option<(String, String)> = None;
    let mut line = String::new();
    loop {
        line.clear();
        if log.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let Some((_, message)) = line.trim_end().split_once("[class,load] ") else {
            continue;
        };
        let message = message.trim_start();
        let Some(debug) = message.strip_prefix("klass: ") else {
            pending = message
                .split_once(" source: ")
                .map(|(name, source)| (name.to_string(), source.to_string()));
            continue;
        };
        if let Some(((name, source), (klass, sup, interfaces, builtin))) =
            pending.take().zip(parse_debug(debug))
        {
            f(Class {
                name,
                source,
                klass,
                sup,
                interfaces,
                builtin,
            });
        }
    }
}

/// `A super: B interfaces: C D loader: [...] …` → the addresses, and whether the loader is
/// the boot, platform or application loader.
fn parse_debug(debug: &str) -> Option<(u64, u64, Vec<u64>, bool)> {
    let (fields, loader) = debug.split_once(" loader: ")?;
    let addr = |s: &str| u64::from_str_radix(s.strip_prefix("0x")?, 16).ok();
    let mut words = fields.split_whitespace();
    let klass = addr(words.next()?)?;
    let sup = match (words.next(), words.next()) {
        (Some("super:"), Some(sup)) => addr(sup)?,
        _ => return None,
    };
    let interfaces = match words.next() {
        Some("interfaces:") => words.map(addr).collect::<Option<Vec<u64>>>()?,
        Some(_) => return None,
        None => Vec::new(),
    };
    let loader = loader.split_once(']').map_or(loader, |(l, _)| l);
    let builtin = loader.ends_with("of 'bootstrap'")
        || loader.contains("'jdk/internal/loader/ClassLoaders$AppClassLoader'")
        || loader.contains("'jdk/internal/loader/ClassLoaders$PlatformClassLoader'");
    Some((klass, sup, interfaces, builtin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A JVM's class-loading log as Java 17 writes it (abridged addresses and loaders).
    const LOG: &str = "\
[0.011s][info ][class,load] java.lang.Object source: shared objects file
[0.011s][debug][class,load]  klass: 0x10 super: 0x0000000000000000 loader: [loader data: 0x1 of 'bootstrap']
[0.015s][info ][class,load] java.lang.Runnable source: jrt:/java.base
[0.015s][debug][class,load]  klass: 0x20 super: 0x10 loader: [loader data: 0x1 of 'bootstrap'] bytes: 201 checksum: d61f82d0
[0.020s][info ][class,load] org.apache.flink.runtime.rpc.RpcSystem source: file:/opt/flink/lib/flink-dist.jar
[0.020s][debug][class,load]  klass: 0x30 super: 0x10 interfaces: 0x20 loader: [loader data: 0x2 for instance a 'jdk/internal/loader/ClassLoaders$AppClassLoader'{0x9}] bytes: 900 checksum: 1
[0.100s][info ][class,load] org.apache.pekko.Base source: file:/tmp/flink-rpc-pekko_1.jar
[0.100s][debug][class,load]  klass: 0x40 super: 0x10 loader: [loader data: 0x3 for instance a 'org/apache/flink/core/classloading/SubmoduleClassLoader'{0xa}] bytes: 400 checksum: 2
[0.101s][info ][class,load] org.apache.pekko.Rpc$1 source: file:/tmp/flink-rpc-pekko_1.jar
[0.101s][debug][class,load]  klass: 0x50 super: 0x40 interfaces: 0x30 0x20 loader: [loader data: 0x3 for instance a 'org/apache/flink/core/classloading/SubmoduleClassLoader'{0xa}] bytes: 500 checksum: 3
[0.102s][info ][class,load] org.apache.pekko.Rpc$$Lambda$7/0x0000000801000a00 source: org.apache.pekko.Rpc$1
[0.102s][debug][class,load]  klass: 0x60 super: 0x10 interfaces: 0x20 loader: [loader data: 0x3 for instance a 'org/apache/flink/core/classloading/SubmoduleClassLoader'{0xa}]
[0.103s][info ][class,load] org.apache.pekko.FromGone source: file:/tmp/gone.jar
[0.103s][debug][class,load]  klass: 0x70 super: 0x10 loader: [loader data: 0x3 for instance a 'org/apache/flink/core/classloading/SubmoduleClassLoader'{0xa}] bytes: 400 checksum: 4
[0.104s][info ][class,load] org.apache.pekko.OnGone source: file:/tmp/flink-rpc-pekko_1.jar
[0.104s][debug][class,load]  klass: 0x80 super: 0x70 loader: [loader data: 0x3 for instance a 'org/apache/flink/core/classloading/SubmoduleClassLoader'{0xa}] bytes: 400 checksum: 5
[0.105s][info ][class,load] org.apache.pekko.Base source: file:/tmp/flink-rpc-pekko_2.jar
[0.105s][debug][class,load]  klass: 0x90 super: 0x10 loader: [loader data: 0x4 for instance a 'org/apache/flink/core/classloading/SubmoduleClassLoader'{0xb}] bytes: 400 checksum: 2
";

    #[test]
    fn lists_the_classes_of_flinks_own_loaders_after_what_they_extend() {
        let suffix = suffix(Cursor::new(LOG), |p| !p.ends_with("gone.jar")).unwrap();
        assert_eq!(
            suffix.text,
            "java/lang/Object id: 1\n\
             org/apache/flink/runtime/rpc/RpcSystem id: 3\n\
             java/lang/Runnable id: 4\n\
             org/apache/pekko/Base id: 2 super: 1 source: /tmp/flink-rpc-pekko_1.jar\n\
             org/apache/pekko/Rpc$1 id: 5 super: 2 interfaces: 3 4 source: /tmp/flink-rpc-pekko_1.jar\n"
        );
        // Left out: the hidden class, the class from a jar that is gone and its subclass, and
        // the second class of a name already listed.
        assert_eq!(suffix.classes, 2);
    }

    #[test]
    fn a_log_without_such_classes_adds_nothing() {
        let builtin: String = LOG.lines().take(6).map(|l| format!("{l}\n")).collect();
        assert_eq!(
            suffix(Cursor::new(builtin), |_| true).unwrap(),
            Suffix::default()
        );
        assert_eq!(
            suffix(Cursor::new(""), |_| true).unwrap(),
            Suffix::default()
        );
        // A debug line without its info line, and a truncated last message.
        let torn = LOG.lines().skip(7).take(2).collect::<Vec<_>>().join("\n");
        assert_eq!(suffix(Cursor::new(torn), |_| true).unwrap().classes, 0);
    }
}
