//! The watchdog's side channel (docs/architecture.md, "Hangs"): each rank serves one line
//! saying what it is doing on a TCP port of its own, and a rank whose watchdog fires asks
//! every other rank there. It
//! needs no MPI (the main thread is stuck inside it) and nothing but the kernel of the
//! asked rank to connect: a stopped process's kernel still accepts the connection, so
//! silence within [`ANSWER_WITHIN`] means stopped or hung, and a refused connection
//! means gone.
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::Context;

use super::Group;

/// How long a peer has to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);
/// Bytes of a host name carried in the exchange (longer names are cut).
const HOST_BYTES: usize = 64;
/// Peers asked at once.
const ASK_AT_ONCE: usize = 64;

/// Where another rank's status server listens.
#[derive(Debug, Clone)]
pub struct Peer {
    pub rank: usize,
    pub host: String,
    pub port: u16,
    pub pid: u32,
}

/// What asking one rank gave.
pub enum Answer {
    /// Its status line.
    Said(String),
    /// No answer, and why (timed out, refused, unresolvable).
    Silent(String),
    /// This rank itself (not asked).
    Me,
}

/// This rank's listening socket.
pub struct StatusServer {
    listener: TcpListener,
    rank: usize,
}

impl StatusServer {
    pub fn bind(rank: usize) -> anyhow::Result<StatusServer> {
        let listener = TcpListener::bind(("0.0.0.0", 0))
            .with_context(|| format!("rank {rank}: the watchdog's status port"))?;
        Ok(StatusServer { listener, rank })
    }

    /// Every rank's host, port and pid (collective over `world`, index = rank).
    pub fn exchange(&self, world: &Group) -> anyhow::Result<Vec<Peer>> {
        let port = self.listener.local_addr()?.port();
        let mut mine = vec![u64::from(port), u64::from(std::process::id())];
        let mut host = [0u8; HOST_BYTES];
        let name = host_name();
        let n = name.len().min(HOST_BYTES);
        host[..n].copy_from_slice(&name.as_bytes()[..n]);
        mine.extend(
            host.chunks_exact(8)
                // chunks_exact(8): every chunk converts.
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default())),
        );
        let all = world.all_gather_u64s(&mine)?;
        Ok(all
            .chunks_exact(mine.len())
            .enumerate()
            .map(|(rank, c)| {
                let bytes: Vec<u8> = c[2..].iter().flat_map(|w| w.to_le_bytes()).collect();
                let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
                Peer {
                    rank,
                    host: String::from_utf8_lossy(&bytes[..end]).into_owned(),
                    port: c[0] as u16,
                    pid: c[1] as u32,
                }
            })
            .collect())
    }

    /// Answers every connection with `status()` on a thread of its own, for the life of
    /// the process.
    pub fn serve(self, status: fn() -> String) -> anyhow::Result<()> {
        let rank = self.rank;
        std::thread::Builder::new()
            .name("watchdog-status".into())
            .spawn(move || {
                for mut conn in self.listener.incoming().flatten() {
                    let line = format!("{}\n", status());
                    let _ = conn.write_all(line.as_bytes());
                    let _ = conn.shutdown(Shutdown::Both);
                }
            })
            .with_context(|| format!("rank {rank}: the watchdog's status thread"))?;
        Ok(())
    }
}

/// Asks every peer but `me` for its status, [`ASK_AT_ONCE`] at a time; index = rank.
pub fn ask_all(peers: &[Peer], me: usize) -> Vec<Answer> {
    let mut answers = Vec::with_capacity(peers.len());
    for chunk in peers.chunks(ASK_AT_ONCE) {
        std::thread::scope(|s| {
            let asks: Vec<_> = chunk
                .iter()
                .map(|p| s.spawn(move || if p.rank == me { Answer::Me } else { ask(p) }))
                .collect();
            answers.extend(asks.into_iter().map(|h| {
                h.join()
                    .unwrap_or_else(|_| Answer::Silent("asking it failed".into()))
            }));
        });
    }
    answers
}

fn ask(peer: &Peer) -> Answer {
    let addrs = match (peer.host.as_str(), peer.port).to_socket_addrs() {
        Ok(a) => a.collect::<Vec<_>>(),
        Err(e) => return Answer::Silent(format!("cannot resolve host {}: {e}", peer.host)),
    };
    let mut last = String::from("no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, ANSWER_WITHIN) {
            Ok(mut conn) => {
                let _ = conn.set_read_timeout(Some(ANSWER_WITHIN));
                let mut text = String::new();
                return match conn.read_to_string(&mut text) {
                    Ok(_) if !text.trim().is_empty() => Answer::Said(text.trim().to_string()),
                    Ok(_) => Answer::Silent("closed without a word".into()),
                    Err(_) => {
                        Answer::Silent(format!("no answer within {} s", ANSWER_WITHIN.as_secs()))
                    }
                };
            }
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Answer::Silent(last)
}

/// This machine's host name (empty if unknown).
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
