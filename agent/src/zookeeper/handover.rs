//! Early leadership hand-over after this node's leading JobManager crashed.
//!
//! Flink's JobManagers elect their leader with a Curator `LeaderLatch`: each one holds an
//! ephemeral sequential node under `<flink path>/leader/latch`, the lowest one leads, and the
//! leader also holds the ephemeral `leader/<component>/connection_info` nodes and lock nodes
//! under the job graphs and checkpoints. When the leading JVM is killed, all of those stay until ZooKeeper
//! expires its session (`ha.session_timeout_ms` after its last heartbeat), and only then does
//! a standby lead: the whole session timeout is added to every JobManager crash.
//!
//! The agent knows at once that its JobManager died (it is the JVM's parent, or holds a pidfd
//! of an adopted one).
//! A dead process can never use its session again (no one else has the session's password), so
//! deleting that session's ephemeral nodes in Flink's namespace does what the expiry will do,
//! only earlier: the next JobManager in the latch leads at once. The session is identified
//! without guessing:
//! - it owns the `rest_server/connection_info` node, whose address is this node's, and
//! - it owns the lowest latch node (it still leads), and
//! - the release starts and ends within half a session timeout of the crash (the agent sees
//!   an exit at once: it is the parent, or holds a pidfd). The dead session cannot expire before
//!   two thirds of a timeout after the crash (the client heartbeats every third), so no
//!   JobManager started since (this node's new one included) can lead meanwhile, and every
//!   node deleted is still the dead session's.
//!
//! A JobManager that only hangs (SIGSTOP, a long GC) is never released: it has not exited and
//! its session may come back; Flink's own timeout decides. A standby that crashes is left to the
//! timeout too: nothing it owns names it (it publishes no address), and its latch node only
//! matters if the leader also dies before it expires.

use super::leader;
use std::time::Duration;
use zookeeper_client as zk;

/// At most this many nodes of Flink's namespace are walked (it holds a few per job and
/// checkpoint): a bound, not a limit met in practice.
const MAX_NODES: usize = 20_000;

/// Why no leadership was released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// The crash was seen too long ago: the session may have expired and a new leader may hold
    /// the nodes by now.
    TooLate(Duration),
    /// No JobManager leads (Flink published no REST address).
    NoLeader,
    /// Another node's JobManager leads: this node's crashed one was a standby.
    LedElsewhere(String),
    /// The leader's node is not ephemeral (owner 0), or the lowest latch node has another
    /// owner (or there is none).
    NotTheLeader {
        published_by: i64,
        latch_leader: Option<i64>,
    },
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::TooLate(age) => write!(
                f,
                "the crash was seen {:.1} s ago; the session timeout decides",
                age.as_secs_f64()
            ),
            Skip::NoLeader => f.write_str("no JobManager leads"),
            Skip::LedElsewhere(host) => write!(f, "the leader is at {host}"),
            Skip::NotTheLeader {
                published_by,
                latch_leader,
            } => write!(
                f,
                "the crashed JobManager did not lead (this node's address published by session {published_by:#x}, the latch led by {})",
                latch_leader.map_or("no one".to_string(), |s| format!("session {s:#x}"))
            ),
        }
    }
}

/// What a release did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// The dead session's nodes deleted (its latch node last): the session, how many.
    Released {
        session: i64,
        nodes: usize,
    },
    Skipped(Skip),
}

/// The dead leader's session, from the `connection_info` node (its data and owner), the owners
/// of the latch's nodes (by name) and how long ago the crash was seen. Pure.
pub fn dead_session(
    connection_info: Option<(&[u8], i64)>,
    latch: &[(String, i64)],
    node_address: &str,
    age: Duration,
    session_timeout: Duration,
) -> Result<i64, Skip> {
    if age >= session_timeout / 2 {
        return Err(Skip::TooLate(age));
    }
    let (data, owner) = connection_info.ok_or(Skip::NoLeader)?;
    let host = leader::parse_address(data)
        .and_then(|a| leader::host_of(&a))
        .ok_or(Skip::NoLeader)?;
    if host != node_address {
        return Err(Skip::LedElsewhere(host));
    }
    // Curator names latch nodes `<prefix>latch-<sequence>`: the lowest sequence leads.
    let lowest = latch
        .iter()
        .filter_map(|(name, owner)| Some((name.rsplit('-').next()?.parse::<u64>().ok()?, *owner)))
        .min_by_key(|(seq, _)| *seq);
    match lowest {
        Some((_, latch_owner)) if owner != 0 && latch_owner == owner => Ok(owner),
        _ => Err(Skip::NotTheLeader {
            published_by: owner,
            latch_leader: lowest.map(|(_, o)| o),
        }),
    }
}

/// The order of deletion: every node but the latch's first (locks, connection infos), the
/// latch node last, so the next leader finds no trace of the dead session. Pure.
pub fn deletion_order(mut owned: Vec<String>, latch_dir: &str) -> Vec<String> {
    owned.sort_by_key(|p| p.starts_with(&format!("{latch_dir}/")));
    owned
}

/// Releases the leadership of this node's crashed JobManager, `age` after the crash was seen.
/// `flink_path` is Flink's namespace (`/flink/<cluster-id>`).
pub async fn release(
    client: &zk::Client,
    flink_path: &str,
    node_address: &str,
    age: Duration,
    session_timeout: Duration,
) -> Result<Release, zk::Error> {
    if age >= session_timeout / 2 {
        return Ok(Release::Skipped(Skip::TooLate(age)));
    }
    let info = match client.get_data(&leader::rest_leader_path(flink_path)).await {
        Ok((data, stat)) => Some((data, stat.ephemeral_owner)),
        Err(zk::Error::NoNode) => None,
        Err(e) => return Err(e),
    };
    let latch_dir = format!("{flink_path}/leader/latch");
    let mut latch = Vec::new();
    for name in client
        .list_children(&latch_dir)
        .await
        .or_else(no_node_empty)?
    {
        if let Some(stat) = client.check_stat(&format!("{latch_dir}/{name}")).await? {
            latch.push((name, stat.ephemeral_owner));
        }
    }
    let session = match dead_session(
        info.as_ref().map(|(d, o)| (d.as_slice(), *o)),
        &latch,
        node_address,
        age,
        session_timeout,
    ) {
        Ok(s) => s,
        Err(skip) => return Ok(Release::Skipped(skip)),
    };
    let order = deletion_order(owned_by(client, flink_path, session).await?, &latch_dir);
    // One transaction: one commit (and one fsync on each server) rather than one per node.
    let mut all = client.new_multi_writer();
    for path in &order {
        all.add_delete(path, None)?;
    }
    match all.commit().await {
        Ok(_) => {
            return Ok(Release::Released {
                session,
                nodes: order.len(),
            })
        }
        // One went meanwhile (the session expired after all): delete the rest one by one.
        Err(zk::MultiWriteError::OperationFailed {
            source: zk::Error::NoNode,
            ..
        }) => {}
        Err(e) => return Err(e.into()),
    }
    let mut nodes = 0;
    for path in &order {
        match client.delete(path, None).await {
            Ok(()) => nodes += 1,
            Err(zk::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Release::Released { session, nodes })
}

/// Every node under `root` whose ephemeral owner is `session`.
async fn owned_by(client: &zk::Client, root: &str, session: i64) -> Result<Vec<String>, zk::Error> {
    let mut owned = Vec::new();
    let mut queue = vec![root.to_string()];
    let mut seen = 0;
    while let Some(path) = queue.pop() {
        seen += 1;
        if seen > MAX_NODES {
            break;
        }
        let (children, stat) = match client.get_children(&path).await {
            Ok(v) => v,
            Err(zk::Error::NoNode) => continue,
            Err(e) => return Err(e),
        };
        if stat.ephemeral_owner == session {
            owned.push(path.clone());
        }
        let base = path.trim_end_matches('/');
        queue.extend(children.into_iter().map(|c| format!("{base}/{c}")));
    }
    Ok(owned)
}

fn no_node_empty(e: zk::Error) -> Result<Vec<String>, zk::Error> {
    match e {
        zk::Error::NoNode => Ok(Vec::new()),
        e => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(6);
    const INFO: &[u8] =
        b"\xac\xed\x00\x05w\x1a\x00\x18http://198.51.100.1:8081sr\x00\x0ejava.util.UUID";

    fn latch(owners: &[(u64, i64)]) -> Vec<(String, i64)> {
        owners
            .iter()
            .map(|(seq, o)| (format!("_c_0d1e-latch-{seq:010}"), *o))
            .collect()
    }

    #[test]
    fn the_dead_leader_is_the_session_holding_both_its_address_and_the_lowest_latch_node() {
        let ok = dead_session(
            Some((INFO, 7)),
            &latch(&[(12, 9), (3, 7), (5, 8)]),
            "198.51.100.1",
            Duration::from_millis(200),
            TIMEOUT,
        );
        assert_eq!(ok, Ok(7));
    }

    #[test]
    fn anything_less_certain_is_left_to_the_session_timeout() {
        let fresh = Duration::from_millis(200);
        let here = "198.51.100.1";
        // A standby crashed: the leader is elsewhere.
        assert_eq!(
            dead_session(
                Some((INFO, 7)),
                &latch(&[(3, 7)]),
                "198.51.100.2",
                fresh,
                TIMEOUT
            ),
            Err(Skip::LedElsewhere("198.51.100.1".into()))
        );
        // The address is ours but a newer session leads (the old one expired, ours came back).
        assert_eq!(
            dead_session(
                Some((INFO, 7)),
                &latch(&[(3, 8), (4, 7)]),
                here,
                fresh,
                TIMEOUT
            ),
            Err(Skip::NotTheLeader {
                published_by: 7,
                latch_leader: Some(8)
            })
        );
        // Not ephemeral, or no latch at all.
        assert_eq!(
            dead_session(Some((INFO, 0)), &latch(&[(3, 0)]), here, fresh, TIMEOUT),
            Err(Skip::NotTheLeader {
                published_by: 0,
                latch_leader: Some(0)
            })
        );
        assert_eq!(
            dead_session(Some((INFO, 7)), &[], here, fresh, TIMEOUT),
            Err(Skip::NotTheLeader {
                published_by: 7,
                latch_leader: None
            })
        );
        // No leader published.
        assert_eq!(
            dead_session(None, &latch(&[(3, 7)]), here, fresh, TIMEOUT),
            Err(Skip::NoLeader)
        );
        assert_eq!(
            dead_session(Some((b"", 7)), &latch(&[(3, 7)]), here, fresh, TIMEOUT),
            Err(Skip::NoLeader)
        );
        // Seen too late: the session may have expired and its nodes be someone else's.
        assert_eq!(
            dead_session(
                Some((INFO, 7)),
                &latch(&[(3, 7)]),
                here,
                TIMEOUT / 2,
                TIMEOUT
            ),
            Err(Skip::TooLate(TIMEOUT / 2))
        );
    }

    #[test]
    fn the_latch_node_goes_last() {
        let order = deletion_order(
            vec![
                "/flink/c/leader/latch/_c_1-latch-0000000003".into(),
                "/flink/c/leader/rest_server/connection_info".into(),
                "/flink/c/jobgraphs/j/locks/u".into(),
            ],
            "/flink/c/leader/latch",
        );
        assert_eq!(
            order.last().unwrap(),
            "/flink/c/leader/latch/_c_1-latch-0000000003"
        );
        assert_eq!(order.len(), 3);
    }
}
