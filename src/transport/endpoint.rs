//! QUIC endpoints: UDP sockets with large buffers and transport parameters
//! sized for long fat links rather than library defaults.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use super::congestion::Congestion;
use quinn::{Endpoint, EndpointConfig, TransportConfig, VarInt};
use quinn_proto::RandomConnectionIdGenerator;
use socket2::{Domain, Protocol, Socket, Type};

/// The largest UDP payload we send or accept: path MTU discovery searches
/// up to it, and peers learn it as our `max_udp_payload_size`.
///
/// quinn's default (1452) suits Ethernet, but loopback and jumbo-frame
/// links carry far larger datagrams, and each packet costs the same work
/// however small it is: on loopback 6,500-byte packets nearly double what
/// one connection carries. Paths with a smaller MTU are found by the
/// search, whose lost probes cost neither data nor congestion window. It
/// stays below 64 KiB / 10 because quinn hands the kernel up to ten
/// datagrams per segmented send and the kernel refuses a larger send.
const MAX_UDP_PAYLOAD: u16 = 6500;

/// Bytes of the connection IDs a command's endpoint hands out; every packet
/// a daemon sends it carries one. quinn's default, 8 bytes with a checksum,
/// lets a daemon with many connections drop stray packets cheaply; a
/// command has a connection or two, and each byte saved is 0.07 % of the
/// bytes of a download.
const CLIENT_CID_LEN: usize = 4;

/// Packets of ours a peer may receive before it must acknowledge them,
/// asked of it with QUIC's ACK frequency extension (less than a peer's
/// `max_ack_delay`, 25 ms, apart, and at once on a gap). QUIC's default
/// acknowledges every second packet: at 100 Mbit/s that is about 2 Mbit/s
/// of acknowledgements, all of a thin return path's capacity (an
/// asymmetric access line) and a share of the work of a fast one.
const PACKETS_PER_ACK: u32 = 8;

/// Transport parameters of a connection.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Bytes a peer may send on one stream ahead of our reads.
    pub stream_window: u32,
    /// Bytes a peer may send on all streams together ahead of our reads.
    pub connection_window: u32,
    /// Bytes we buffer for sending on all streams together.
    pub send_window: u64,
    /// Bidirectional streams a peer may open at once (files in flight).
    pub max_streams: u32,
    /// UDP socket buffer requested from the kernel, each way.
    pub socket_buffer: usize,
    /// Keep-alive interval; an idle connection pings this often.
    pub keep_alive: Duration,
    /// A connection with no packet from the peer for this long is dead.
    pub idle_timeout: Duration,
    /// How long a client waits for a daemon to complete the handshake.
    pub connect_timeout: Duration,
    /// The congestion controller of what we send.
    pub congestion: Congestion,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            stream_window: 12 << 20,
            connection_window: 64 << 20,
            send_window: 64 << 20,
            max_streams: 512,
            socket_buffer: 8 << 20,
            keep_alive: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            congestion: Congestion::default(),
        }
    }
}

impl Tuning {
    /// quinn's transport configuration for these parameters.
    pub fn transport_config(&self) -> TransportConfig {
        let mut config = TransportConfig::default();
        config
            .stream_receive_window(VarInt::from_u32(self.stream_window))
            .receive_window(VarInt::from_u32(self.connection_window))
            .send_window(self.send_window)
            .max_concurrent_bidi_streams(VarInt::from_u32(self.max_streams))
            .max_concurrent_uni_streams(VarInt::from_u32(0))
            .congestion_controller_factory(self.congestion.factory())
            .keep_alive_interval(Some(self.keep_alive))
            .max_idle_timeout(Some(
                self.idle_timeout
                    .try_into()
                    .expect("idle timeout fits a QUIC varint"),
            ));
        let mut mtu = quinn::MtuDiscoveryConfig::default();
        mtu.upper_bound(MAX_UDP_PAYLOAD);
        config.mtu_discovery_config(Some(mtu));
        let mut acks = quinn::AckFrequencyConfig::default();
        acks.ack_eliciting_threshold(VarInt::from_u32(PACKETS_PER_ACK - 1));
        config.ack_frequency_config(Some(acks));
        config
    }
}

/// Binds a UDP socket at `addr` with the requested buffers and makes a QUIC
/// endpoint of it, a server if `server` is given.
pub fn bind(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
    tuning: &Tuning,
) -> io::Result<Endpoint> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false).ok();
    }
    size_buffers(&socket, tuning.socket_buffer);
    socket.bind(&addr.into())?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| io::Error::other("no async runtime found for QUIC"))?;
    let mut config = EndpointConfig::default();
    config
        .max_udp_payload_size(MAX_UDP_PAYLOAD)
        .expect("the payload ceiling is a valid UDP payload size");
    if server.is_none() {
        config.cid_generator(|| Box::new(RandomConnectionIdGenerator::new(CLIENT_CID_LEN)));
    }
    Endpoint::new(config, server, socket.into(), runtime)
}

/// Asks for `wanted` bytes of socket buffer each way and warns when the
/// kernel grants less: drops at the socket look like congestion to QUIC.
fn size_buffers(socket: &Socket, wanted: usize) {
    let _ = socket.set_recv_buffer_size(wanted);
    let _ = socket.set_send_buffer_size(wanted);
    // Linux reports twice what it grants for bookkeeping.
    let granted = |size: io::Result<usize>| size.map(|s| s / 2).unwrap_or(0);
    let recv = granted(socket.recv_buffer_size());
    let send = granted(socket.send_buffer_size());
    if recv < wanted || send < wanted {
        tracing::warn!(
            wanted,
            recv,
            send,
            "the kernel capped the UDP socket buffers; raise net.core.rmem_max and \
             net.core.wmem_max for full speed on long links"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc_tables;

    /// `docs/protocol.md` §2.3 states the default [`Tuning`], the payload
    /// ceiling and the default congestion controller.
    #[test]
    fn protocol_md_states_the_transport_parameters() {
        let table = doc_tables::table("docs/protocol.md", &["Parameter"]);
        let tuning = Tuning::default();
        let mib = |bytes: u64| {
            assert_eq!(bytes % (1 << 20), 0, "{bytes} is whole MiB");
            format!("{} MiB", bytes >> 20)
        };
        let seconds = |duration: Duration| format!("{} s", duration.as_secs());
        let stated = [
            (
                "`initial_max_stream_data_*`",
                mib(tuning.stream_window.into()),
            ),
            ("`initial_max_data`", mib(tuning.connection_window.into())),
            ("send window (local)", mib(tuning.send_window)),
            ("`initial_max_streams_bidi`", tuning.max_streams.to_string()),
            ("`max_idle_timeout`", seconds(tuning.idle_timeout)),
            (
                "`max_udp_payload_size`",
                format!("{} bytes", doc_tables::grouped(MAX_UDP_PAYLOAD.into())),
            ),
            ("keep-alive (local)", seconds(tuning.keep_alive)),
            (
                "ACK frequency (asked of the peer)",
                format!("every {PACKETS_PER_ACK} packets"),
            ),
            (
                "UDP socket buffers (local)",
                mib(tuning.socket_buffer as u64),
            ),
            (
                "connect timeout (client, local)",
                seconds(tuning.connect_timeout),
            ),
            (
                "congestion controller (local)",
                format!("`{}`", tuning.congestion),
            ),
        ];
        for (parameter, value) in &stated {
            let cell = &doc_tables::row(&table, parameter)[1];
            assert!(
                cell.starts_with(value.as_str()),
                "docs/protocol.md §2.3 {parameter}: {cell:?}, the code has {value}"
            );
        }
        assert_eq!(
            table.len(),
            stated.len() + 1,
            "a row per parameter, and uni"
        );
    }
}
