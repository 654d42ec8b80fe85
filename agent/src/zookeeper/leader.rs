//! Which JobManager leads, as Flink itself publishes it: each leading component writes its
//! address to `<path.root><cluster-id>/leader/<component>/connection_info` in ZooKeeper, as a
//! Java serialization stream (`ObjectOutputStream.writeUTF(address)` then the leader session's
//! UUID). Only the address is read here.

/// The znode where Flink's leading REST endpoint publishes its URL.
pub fn rest_leader_path(flink_cluster_path: &str) -> String {
    format!("{flink_cluster_path}/leader/rest_server/connection_info")
}

/// The address written first into a `connection_info` node (`http://10.0.0.2:8081`), or None
/// when the bytes are not such a stream (an empty node while no one leads).
pub fn parse_address(bytes: &[u8]) -> Option<String> {
    // Stream magic and version, then the block-data record that holds writeUTF's bytes.
    let rest = bytes.strip_prefix(&[0xAC, 0xED, 0x00, 0x05])?;
    let body = match rest.first()? {
        0x77 => rest.get(2..)?, // TC_BLOCKDATA, 1-byte length
        0x7A => rest.get(5..)?, // TC_BLOCKDATALONG, 4-byte length
        _ => return None,
    };
    let len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let text = body.get(2..2 + len)?;
    // Modified UTF-8 equals UTF-8 for the ASCII of URLs.
    String::from_utf8(text.to_vec()).ok()
}

/// The host of an address like `http://10.0.0.2:8081` or `pekko.tcp://flink@[2001:db8::2]:6123/user/...`.
pub fn host_of(address: &str) -> Option<String> {
    let after_scheme = address.split_once("://").map_or(address, |(_, r)| r);
    let authority = after_scheme.split('/').next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.0,
        None => host_port.rsplit_once(':').map_or(host_port, |(h, _)| h),
    };
    (!host.is_empty()).then(|| host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/flink/<cluster>/leader/rest_server/connection_info` as Flink 2.3 wrote it (the UUID
    /// object cut short).
    const REST_SERVER: &[u8] =
        b"\xac\xed\x00\x05w\x1a\x00\x18http://198.51.100.1:8081sr\x00\x0ejava.util.UUID";

    #[test]
    fn reads_the_leader_address_and_its_host() {
        let address = parse_address(REST_SERVER).expect("an address");
        assert_eq!(address, "http://198.51.100.1:8081");
        assert_eq!(host_of(&address).as_deref(), Some("198.51.100.1"));
        assert_eq!(
            host_of("pekko.tcp://flink@[2001:db8::2]:6123/user/rpc/dispatcher_0").as_deref(),
            Some("2001:db8::2")
        );
        assert_eq!(parse_address(b""), None);
        assert_eq!(parse_address(&REST_SERVER[..8]), None);
    }
}
