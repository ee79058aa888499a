//! Launch rendezvous over TCP: rank 0 hands a few bytes to every other rank.
//!
//! NCCL ranks must agree on a 128-byte unique id that rank 0 creates; torchrun-style launchers
//! only give each process `MASTER_ADDR:MASTER_PORT`. So rank 0 listens there ([`Server`]) and
//! every other rank connects, retrying until rank 0 is up, and receives the bytes ([`fetch`]).
//! Both sides send their `WORLD_SIZE`, so a job whose processes disagree about it fails here
//! with both numbers instead of hanging in NCCL.
//!
//! Wire format, integers little-endian:
//!
//! * hello, rank → rank 0: `MAGIC`, world size (u64), rank (u64);
//! * reply: `MAGIC`, world size (u64), status (u8: [`OK`], [`WORLD_MISMATCH`], [`REFUSED`]),
//!   length (u64), then the payload (or, unless OK, rank 0's reason as UTF-8).
//!
//! Nothing here knows about NCCL, so it is tested on CPU with ranks as threads.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::error::{DistError, DistResult};

/// Starts every message, so a stray connection (or a different service on the port) is told
/// apart from a rank.
const MAGIC: [u8; 8] = *b"TBRDZV01";
const OK: u8 = 0;
const WORLD_MISMATCH: u8 = 1;
const REFUSED: u8 = 2;
/// The largest payload accepted: the NCCL id is 128 bytes; this bounds what a garbled length
/// can make a rank allocate.
const MAX_PAYLOAD: u64 = 1 << 20;
/// Pause between polls of the listener and between connection attempts.
const RETRY: Duration = Duration::from_millis(20);

/// Rank 0's end: a bound listener.
pub struct Server {
    listener: TcpListener,
    addr: String,
}

impl Server {
    /// Listens on `addr` (`MASTER_ADDR:MASTER_PORT`).
    pub fn bind(addr: &str) -> DistResult<Server> {
        let listener = TcpListener::bind(addr).map_err(|e| rendezvous_error(0, addr, format!("rank 0 cannot listen there: {e}; MASTER_ADDR must name this host and the port must be free (under torchrun, whose agent listens on MASTER_PORT itself, set TENSORBRAIN_RDZV_PORT to another free port for every rank)")))?;
        // Nonblocking, so the accept loop can give up at the deadline.
        listener.set_nonblocking(true).map_err(|e| rendezvous_error(0, addr, format!("cannot make the listener nonblocking: {e}")))?;
        // Errors name the address as given (a host name means more than its IP), unless it
        // asked for any free port: then the port the system chose.
        let addr = match listener.local_addr() {
            Ok(bound) if addr.ends_with(":0") => bound.to_string(),
            _ => addr.to_string(),
        };
        Ok(Server { listener, addr })
    }

    /// The address actually bound (the port, when `addr` asked for port 0).
    pub fn local_addr(&self) -> DistResult<SocketAddr> {
        self.listener.local_addr().map_err(|e| rendezvous_error(0, &self.addr, format!("cannot read the bound address: {e}")))
    }

    /// Hands `payload` to ranks `1..world_size`, once each, and returns when all have it.
    /// Fails at once on a rank that disagrees about the world size or claims a rank that is
    /// taken or out of range; fails after `timeout` naming the ranks that never connected.
    pub fn serve(self, world_size: usize, payload: &[u8], timeout: Duration) -> DistResult<()> {
        let start = Instant::now();
        let mut joined = vec![false; world_size];
        joined[0] = true;
        // Connections that were not a rank (wrong magic, closed early): reported only if the
        // rendezvous then times out, as a hint that something else uses the port.
        let mut strays = Vec::new();
        while joined.iter().any(|j| !j) {
            let remaining = match timeout.checked_sub(start.elapsed()) {
                Some(r) if !r.is_zero() => r,
                _ => {
                    let missing: Vec<usize> = (0..world_size).filter(|&r| !joined[r]).collect();
                    let mut detail = "they were not started, failed before connecting, or were given another MASTER_ADDR/MASTER_PORT".to_string();
                    if !strays.is_empty() {
                        detail += &format!("; {} other connection(s) were not ranks of this job: {}", strays.len(), strays.join("; "));
                    }
                    return Err(DistError::RendezvousTimeout { rank: 0, addr: self.addr, missing, after: start.elapsed(), detail });
                }
            };
            match self.listener.accept() {
                Ok((stream, peer)) => match self.answer(stream, world_size, payload, &joined, remaining) {
                    Ok(Some(rank)) => joined[rank] = true,
                    Ok(None) => {}
                    Err(Answer::Stray(why)) => strays.push(format!("{peer}: {why}")),
                    Err(Answer::Fatal(msg)) => return Err(rendezvous_error(0, &self.addr, msg)),
                },
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => std::thread::sleep(RETRY),
                Err(e) => return Err(rendezvous_error(0, &self.addr, format!("accepting a connection failed: {e}"))),
            }
        }
        Ok(())
    }

    /// Reads one hello and replies. `Ok(Some(rank))`: that rank now has the payload.
    fn answer(&self, mut stream: TcpStream, world_size: usize, payload: &[u8], joined: &[bool], remaining: Duration) -> Result<Option<usize>, Answer> {
        let io = |e: std::io::Error| Answer::Stray(e.to_string());
        // Accepted sockets may inherit the listener's nonblocking flag on some platforms.
        stream.set_nonblocking(false).map_err(io)?;
        stream.set_read_timeout(Some(remaining)).map_err(io)?;
        stream.set_write_timeout(Some(remaining)).map_err(io)?;
        let mut hello = [0u8; 24];
        stream.read_exact(&mut hello).map_err(io)?;
        if hello[..8] != MAGIC {
            return Err(Answer::Stray("not a TensorBrain rendezvous hello".into()));
        }
        let (their_world, rank) = (u64_at(&hello, 8), u64_at(&hello, 16));
        let ours = world_size as u64;
        let refuse = |stream: &mut TcpStream, status: u8, msg: String| {
            // Best effort: the rank learns why; this rank fails either way.
            let _ = reply(stream, ours, status, msg.as_bytes());
            Answer::Fatal(msg)
        };
        if their_world != ours {
            let msg = format!(
                "rank {rank} was started with WORLD_SIZE={their_world}, but rank 0 has WORLD_SIZE={ours}; every process of a job must get the same WORLD_SIZE"
            );
            return Err(refuse(&mut stream, WORLD_MISMATCH, msg));
        }
        if rank == 0 || rank >= ours {
            let msg = format!("a process connected as rank {rank}, but this job's other ranks are 1..={} (rank 0 is this process); check RANK", ours - 1);
            return Err(refuse(&mut stream, REFUSED, msg));
        }
        if joined[rank as usize] {
            let msg = format!("two processes connected as rank {rank}; every process needs its own RANK");
            return Err(refuse(&mut stream, REFUSED, msg));
        }
        match reply(&mut stream, ours, OK, payload) {
            Ok(()) => Ok(Some(rank as usize)),
            // The rank went away mid-reply; it will reconnect if it is still trying.
            Err(e) => Err(Answer::Stray(format!("rank {rank} closed the connection before receiving the id: {e}"))),
        }
    }
}

enum Answer {
    /// Not a usable rank connection; keep serving.
    Stray(String),
    /// The job is misconfigured; give up.
    Fatal(String),
}

fn reply(stream: &mut TcpStream, world: u64, status: u8, body: &[u8]) -> std::io::Result<()> {
    let mut msg = Vec::with_capacity(25 + body.len());
    msg.extend_from_slice(&MAGIC);
    msg.extend_from_slice(&world.to_le_bytes());
    msg.push(status);
    msg.extend_from_slice(&(body.len() as u64).to_le_bytes());
    msg.extend_from_slice(body);
    stream.write_all(&msg)?;
    stream.flush()
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn rendezvous_error(rank: usize, addr: &str, msg: String) -> DistError {
    DistError::Rendezvous { rank, addr: addr.to_string(), msg }
}

/// A rank other than 0: connects to `addr` (retrying while rank 0 is not up yet) and returns
/// the payload rank 0 serves.
pub fn fetch(addr: &str, rank: usize, world_size: usize, timeout: Duration) -> DistResult<Vec<u8>> {
    let start = Instant::now();
    let targets: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| rendezvous_error(rank, addr, format!("cannot resolve MASTER_ADDR: {e}")))?
        .collect();
    let mut last = String::from("no attempt finished");
    loop {
        let remaining = match timeout.checked_sub(start.elapsed()) {
            Some(r) if !r.is_zero() => r,
            _ => {
                let detail = format!("rank 0 is not listening there or has failed (last attempt: {last})");
                return Err(DistError::RendezvousTimeout { rank, addr: addr.to_string(), missing: vec![0], after: start.elapsed(), detail });
            }
        };
        for target in &targets {
            match try_fetch(target, rank, world_size, remaining) {
                Ok(payload) => return Ok(payload),
                Err(Attempt::Retry(why)) => last = why,
                Err(Attempt::Fatal(msg)) => return Err(rendezvous_error(rank, addr, msg)),
            }
        }
        std::thread::sleep(RETRY.min(timeout.saturating_sub(start.elapsed())));
    }
}

enum Attempt {
    /// Rank 0 is not (yet) reachable.
    Retry(String),
    /// Rank 0 answered, and the answer is final.
    Fatal(String),
}

fn try_fetch(target: &SocketAddr, rank: usize, world_size: usize, remaining: Duration) -> Result<Vec<u8>, Attempt> {
    let retry = |e: std::io::Error| Attempt::Retry(e.to_string());
    let mut stream = TcpStream::connect_timeout(target, remaining).map_err(retry)?;
    stream.set_read_timeout(Some(remaining)).map_err(retry)?;
    stream.set_write_timeout(Some(remaining)).map_err(retry)?;
    let mut hello = Vec::with_capacity(24);
    hello.extend_from_slice(&MAGIC);
    hello.extend_from_slice(&(world_size as u64).to_le_bytes());
    hello.extend_from_slice(&(rank as u64).to_le_bytes());
    stream.write_all(&hello).map_err(retry)?;
    let mut head = [0u8; 25];
    stream.read_exact(&mut head).map_err(retry)?;
    if head[..8] != MAGIC {
        return Err(Attempt::Fatal(format!("{target} answered, but not as a TensorBrain rendezvous; is another service using MASTER_PORT?")));
    }
    let (their_world, status, len) = (u64_at(&head, 8), head[16], u64_at(&head, 17));
    if len > MAX_PAYLOAD {
        return Err(Attempt::Fatal(format!("rank 0 announced {len} bytes; at most {MAX_PAYLOAD} are expected")));
    }
    let mut body = vec![0u8; len as usize];
    stream.read_exact(&mut body).map_err(retry)?;
    match status {
        OK => Ok(body),
        WORLD_MISMATCH => Err(Attempt::Fatal(format!(
            "this rank ({rank}) was started with WORLD_SIZE={world_size}, but rank 0 has WORLD_SIZE={their_world}; every process of a job must get the same WORLD_SIZE"
        ))),
        _ => Err(Attempt::Fatal(format!("rank 0 refused this rank: {}", String::from_utf8_lossy(&body)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    const ID: [u8; 128] = {
        let mut id = [0u8; 128];
        let mut i = 0;
        while i < 128 {
            id[i] = i as u8 ^ 0x5a;
            i += 1;
        }
        id
    };

    fn server() -> (Server, String) {
        let s = Server::bind("127.0.0.1:0").unwrap();
        let addr = s.local_addr().unwrap().to_string();
        (s, addr)
    }

    #[test]
    fn every_rank_receives_rank_0s_bytes() {
        let (s, addr) = server();
        let clients: Vec<_> = (1..4)
            .map(|r| {
                let addr = addr.clone();
                thread::spawn(move || fetch(&addr, r, 4, Duration::from_secs(10)))
            })
            .collect();
        s.serve(4, &ID, Duration::from_secs(10)).unwrap();
        for c in clients {
            assert_eq!(c.join().unwrap().unwrap(), ID.to_vec());
        }
    }

    #[test]
    fn a_rank_that_starts_before_rank_0_retries_until_it_listens() {
        // A port that was free a moment ago; the client tries it before anyone listens.
        let addr = server().1;
        let client = {
            let addr = addr.clone();
            thread::spawn(move || fetch(&addr, 1, 2, Duration::from_secs(10)))
        };
        thread::sleep(Duration::from_millis(200));
        Server::bind(&addr).unwrap().serve(2, &ID, Duration::from_secs(10)).unwrap();
        assert_eq!(client.join().unwrap().unwrap(), ID.to_vec());
    }

    #[test]
    fn a_rank_that_never_shows_up_is_named_with_the_address() {
        let (s, addr) = server();
        let one = {
            let addr = addr.clone();
            thread::spawn(move || fetch(&addr, 1, 3, Duration::from_secs(10)))
        };
        let err = s.serve(3, &ID, Duration::from_millis(500)).unwrap_err();
        one.join().unwrap().unwrap();
        assert!(matches!(&err, DistError::RendezvousTimeout { rank: 0, missing, .. } if missing == &[2]), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&addr) && msg.contains("rank(s) 2"), "{msg}");
    }

    #[test]
    fn no_rank_0_is_a_timeout_naming_rank_0_and_the_address() {
        let addr = server().1; // closed again: nobody listens
        let err = fetch(&addr, 1, 2, Duration::from_millis(300)).unwrap_err();
        assert!(matches!(&err, DistError::RendezvousTimeout { rank: 1, missing, .. } if missing == &[0]), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&addr) && msg.contains("refused"), "{msg}");
    }

    #[test]
    fn a_different_world_size_fails_on_both_sides_with_both_sizes() {
        let (s, addr) = server();
        let client = thread::spawn(move || fetch(&addr, 1, 3, Duration::from_secs(10)));
        let server_err = s.serve(2, &ID, Duration::from_secs(10)).unwrap_err().to_string();
        let client_err = client.join().unwrap().unwrap_err().to_string();
        for msg in [&server_err, &client_err] {
            assert!(msg.contains("WORLD_SIZE=3") && msg.contains("WORLD_SIZE=2"), "{msg}");
        }
    }

    #[test]
    fn two_processes_with_the_same_rank_are_refused() {
        let (s, addr) = server();
        let serving = thread::spawn(move || s.serve(3, &ID, Duration::from_secs(10)));
        assert_eq!(fetch(&addr, 1, 3, Duration::from_secs(10)).unwrap(), ID.to_vec());
        let second = fetch(&addr, 1, 3, Duration::from_secs(10)).unwrap_err().to_string();
        let server_err = serving.join().unwrap().unwrap_err().to_string();
        for msg in [&second, &server_err] {
            assert!(msg.contains("two processes connected as rank 1"), "{msg}");
        }
    }

    #[test]
    fn a_stray_connection_is_ignored() {
        let (s, addr) = server();
        let stray = TcpStream::connect(&addr).unwrap();
        drop(stray);
        let client = {
            let addr = addr.clone();
            thread::spawn(move || fetch(&addr, 1, 2, Duration::from_secs(10)))
        };
        s.serve(2, &ID, Duration::from_secs(10)).unwrap();
        assert_eq!(client.join().unwrap().unwrap(), ID.to_vec());
    }
}
