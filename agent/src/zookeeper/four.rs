//! ZooKeeper's four-letter words (`ruok`, `srvr`): how the agent tells whether a server runs
//! and what it is in the ensemble, without a session. The server answers and closes.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a ZooKeeper server is, as `srvr` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Leader,
    Follower,
    /// Runs, but is not part of a serving quorum (looking for one).
    NotServing,
    /// Does not answer.
    Unreachable,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::NotServing => "not-serving",
            Role::Unreachable => "unreachable",
        }
    }

    /// Part of a serving quorum.
    pub fn serving(self) -> bool {
        matches!(self, Role::Leader | Role::Follower)
    }
}

/// Sends `word` to the server at `host:port` and returns its whole answer.
pub async fn ask(host: &str, port: u16, word: &str, timeout: Duration) -> std::io::Result<String> {
    let addr = super::host_port(host, port);
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(&addr).await?;
        stream.write_all(word.as_bytes()).await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        Ok(answer)
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{addr} did not answer `{word}` within {timeout:?}"),
        )
    })?
}

/// `ruok` answered `imok`: the server process runs (whether or not it serves).
pub async fn runs(host: &str, port: u16, timeout: Duration) -> Result<(), String> {
    match ask(host, port, "ruok", timeout).await {
        Ok(answer) if answer.trim() == "imok" => Ok(()),
        Ok(answer) => Err(format!("answered `ruok` with {:?}", answer.trim())),
        Err(e) => Err(e.to_string()),
    }
}

/// The server's role, from `srvr`.
pub async fn role(host: &str, port: u16, timeout: Duration) -> Role {
    match ask(host, port, "srvr", timeout).await {
        Ok(answer) => parse_srvr(&answer),
        Err(_) => Role::Unreachable,
    }
}

/// Reads the `Mode:` line of a `srvr` answer.
pub fn parse_srvr(answer: &str) -> Role {
    let mode = answer
        .lines()
        .find_map(|l| l.strip_prefix("Mode:"))
        .map(str::trim);
    match mode {
        Some("leader") => Role::Leader,
        Some("follower") => Role::Follower,
        // "standalone" would be a server without peers; ours always have two, so it cannot
        // serve the cluster either. "This ZooKeeper instance is not currently serving
        // requests" is the answer of a server looking for a quorum.
        _ => Role::NotServing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srvr_answers_are_read_by_their_mode_line() {
        let follower = "Zookeeper version: 3.8.0-debian, built on 2023-01-20 00:00 UTC\nLatency min/avg/max: 0/0.0/0\nReceived: 3\nSent: 2\nConnections: 1\nOutstanding: 0\nZxid: 0x100000002\nMode: follower\nNode count: 5\n";
        assert_eq!(parse_srvr(follower), Role::Follower);
        assert_eq!(
            parse_srvr(&follower.replace("follower", "leader")),
            Role::Leader
        );
        assert_eq!(
            parse_srvr("This ZooKeeper instance is not currently serving requests\n"),
            Role::NotServing
        );
        assert!(Role::Leader.serving() && !Role::NotServing.serving());
    }

    #[tokio::test]
    async fn a_server_is_asked_and_a_silent_port_is_unreachable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut word = [0u8; 4];
                if conn.read_exact(&mut word).await.is_ok() {
                    let answer: &[u8] = match &word {
                        b"ruok" => b"imok",
                        _ => b"Mode: leader\n",
                    };
                    let _ = conn.write_all(answer).await;
                }
            }
        });
        let t = Duration::from_secs(2);
        assert_eq!(runs("127.0.0.1", port, t).await, Ok(()));
        assert_eq!(role("127.0.0.1", port, t).await, Role::Leader);
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let closed_port = closed.local_addr().expect("addr").port();
        drop(closed);
        assert_eq!(role("127.0.0.1", closed_port, t).await, Role::Unreachable);
        assert!(runs("127.0.0.1", closed_port, t).await.is_err());
    }
}
