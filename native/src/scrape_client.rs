//! The `direct` scrape transport (`pool.scrape.transport: "direct"`): a thread of the module's
//! own fetches the metrics pages over plain HTTP/1.1, so Envoy's main thread does no scraping.
//!
//! Why: a callout through Envoy's cluster runs Envoy's whole upstream path (an async stream, the
//! router, the connection pool, the codec) on the main thread, which shares a core with a worker.
//! Measured on this project's 2-vCPU VM, 16 endpoints every 50 ms on a busy core: 87–90 µs of
//! CPU per callout against 50–59 µs per fetch with this thread, page parsing included
//! (BENCHMARKS.md, "The direct scrape transport"); most of what is left is the kernel's socket
//! round trip. GIE's EPP also scrapes the model servers directly over HTTP.
//!
//! Shape: one thread runs a single-threaded tokio runtime; each turn it asks its
//! [`ScrapeDriver`] (the scraper's bookkeeping) which pages are due, fetches them concurrently
//! with `hyper`'s HTTP/1.1 client over kept-alive connections (one request per connection at a
//! time; an idle connection is reused, a closed one redialled once), and hands every outcome
//! back to the driver. Each fetch is bounded by the scrape timeout (connect included) and the
//! page-size limit. The driver is held weakly: when the scraper goes away the thread ends.
//! Dropping [`DirectScraper`] wakes the thread and waits for it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1::SendRequest;

use crate::now_ms;

/// One page to fetch.
pub struct Fetch {
    /// The driver's id for this fetch, given back with its outcome.
    pub id: u64,
    /// `ip:port` to dial (also the `host` header).
    pub address: String,
    /// Request path, e.g. `/metrics`.
    pub path: String,
}

/// How one fetch ended.
pub enum Fetched {
    /// Status 200 and the whole body (at most the page-size limit).
    Page(Bytes),
    /// Not reachable, reset, timed out, or a status other than 200.
    Failed,
    /// The body was larger than the page-size limit.
    TooLarge,
}

/// What the thread drives: the scraper's bookkeeping, called on the scrape thread (never on an
/// Envoy thread, so it must not call Envoy).
pub trait ScrapeDriver: Send + Sync {
    /// The fetches due at `now_ms` (ms since the Unix epoch), each already marked as started,
    /// and how long to wait (ms) before asking again.
    fn due(&self, now_ms: u64) -> (Vec<Fetch>, u64);
    /// The outcome of the fetch `id`.
    fn done(&self, id: u64, fetched: Fetched);
}

/// Limits of each fetch.
#[derive(Clone, Copy)]
pub struct Limits {
    /// Whole fetch, connect included.
    pub timeout: Duration,
    /// Largest body accepted, in bytes.
    pub max_body_bytes: usize,
}

/// Idle connections closed after this long unused (an endpoint that left the pool).
const IDLE_FOR: Duration = Duration::from_secs(30);

/// The running scrape thread; dropping it stops the thread and waits for it.
pub struct DirectScraper {
    stop: Arc<AtomicBool>,
    wake: Arc<tokio::sync::Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DirectScraper {
    /// Starts the thread for `driver`. `None` (logged) when the thread cannot start; a thread
    /// that could not build its runtime ends at once ([`DirectScraper::is_finished`]).
    pub fn start(driver: Weak<dyn ScrapeDriver>, limits: Limits) -> Option<DirectScraper> {
        let stop = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(tokio::sync::Notify::new());
        let (t_stop, t_wake) = (stop.clone(), wake.clone());
        let thread = crate::runtime_thread::spawn("picker-scrape", "direct scrapes", move |rt| {
            // Per-address connection state is shared by the fetches through `Rc`: a LocalSet.
            tokio::task::LocalSet::new().block_on(rt, drive(driver, limits, t_stop, t_wake));
        })
        .ok()?;
        Some(DirectScraper {
            stop,
            wake,
            thread: Some(thread),
        })
    }

    /// True once the thread has ended (it ends by itself only when it could not build its
    /// runtime, after a panic it caught, or when its driver is gone).
    pub fn is_finished(&self) -> bool {
        self.thread
            .as_ref()
            .is_none_or(std::thread::JoinHandle::is_finished)
    }
}

impl Drop for DirectScraper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn drive(
    driver: Weak<dyn ScrapeDriver>,
    limits: Limits,
    stop: Arc<AtomicBool>,
    wake: Arc<tokio::sync::Notify>,
) {
    let pool = Rc::new(Connections::default());
    let mut pruned = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let Some(d) = driver.upgrade() else { break };
        let (fetches, delay_ms) = d.due(now_ms());
        drop(d);
        for f in fetches {
            let (pool, driver) = (pool.clone(), driver.clone());
            tokio::task::spawn_local(async move {
                let outcome = fetch(&pool, &f, limits).await;
                if let Some(d) = driver.upgrade() {
                    d.done(f.id, outcome);
                }
            });
        }
        if pruned.elapsed() > IDLE_FOR {
            pool.prune();
            pruned = Instant::now();
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(delay_ms.max(1))) => {}
            () = wake.notified() => {}
        }
    }
}

type Sender = SendRequest<Empty<Bytes>>;

/// Idle kept-alive connections per address, with when each address was last used.
#[derive(Default)]
struct Connections {
    idle: RefCell<HashMap<String, (Vec<Sender>, Instant)>>,
}

impl Connections {
    fn take(&self, address: &str) -> Option<Sender> {
        let mut idle = self.idle.borrow_mut();
        let (list, _) = idle.get_mut(address)?;
        while let Some(s) = list.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn give_back(&self, address: &str, sender: Sender) {
        let mut idle = self.idle.borrow_mut();
        let entry = idle
            .entry(address.to_string())
            .or_insert_with(|| (Vec::new(), Instant::now()));
        entry.1 = Instant::now();
        // A page and a second page of one address can be in flight together: two at most.
        if entry.0.len() < 2 {
            entry.0.push(sender);
        }
    }

    /// Closes connections of addresses unused for [`IDLE_FOR`].
    fn prune(&self) {
        self.idle
            .borrow_mut()
            .retain(|_, (_, used)| used.elapsed() < IDLE_FOR);
    }
}

async fn dial(address: &str) -> Option<Sender> {
    let stream = tokio::net::TcpStream::connect(address).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .ok()?;
    // The connection's I/O runs beside the requests; it ends when the sender is dropped.
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    Some(sender)
}

async fn fetch(pool: &Connections, f: &Fetch, limits: Limits) -> Fetched {
    tokio::time::timeout(limits.timeout, fetch_once(pool, f, limits.max_body_bytes))
        .await
        .unwrap_or(Fetched::Failed)
}

async fn fetch_once(pool: &Connections, f: &Fetch, max_body_bytes: usize) -> Fetched {
    // A kept-alive connection the server closed since its last use fails before any answer:
    // then once more on a new connection.
    if let Some(sender) = pool.take(&f.address) {
        if let Some(out) = exchange(pool, f, sender, max_body_bytes).await {
            return out;
        }
    }
    let Some(sender) = dial(&f.address).await else {
        return Fetched::Failed;
    };
    exchange(pool, f, sender, max_body_bytes)
        .await
        .unwrap_or(Fetched::Failed)
}

/// One request on `sender`; `None` when it failed before a response came (the connection was
/// unusable), so a fresh connection may try again.
async fn exchange(
    pool: &Connections,
    f: &Fetch,
    mut sender: Sender,
    max_body_bytes: usize,
) -> Option<Fetched> {
    sender.ready().await.ok()?;
    let request = hyper::Request::get(f.path.as_str())
        .header(hyper::header::HOST, f.address.as_str())
        .header(hyper::header::ACCEPT, "text/plain;version=0.0.4")
        .body(Empty::new())
        .ok()?;
    let response = sender.send_request(request).await.ok()?;
    let ok = response.status() == hyper::StatusCode::OK;
    let body = Limited::new(response.into_body(), max_body_bytes)
        .collect()
        .await;
    Some(match body {
        Ok(b) => {
            // Read to the end: the connection can carry the next scrape.
            pool.give_back(&f.address, sender);
            if ok {
                Fetched::Page(b.to_bytes())
            } else {
                Fetched::Failed
            }
        }
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Fetched::TooLarge,
        Err(_) => Fetched::Failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::Mutex;

    /// Serves `answers` in turn on one listener, one connection per client; returns its address
    /// and how many connections it accepted.
    fn serve(answers: Vec<Vec<u8>>) -> (String, Arc<Mutex<usize>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(Mutex::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            let mut answers = answers.into_iter();
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                *count.lock().unwrap() += 1;
                let mut buf = [0u8; 4096];
                loop {
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    if got.is_empty() {
                        break;
                    }
                    let Some(a) = answers.next() else { return };
                    let close = a.starts_with(b"CLOSE");
                    let _ = conn.write_all(a.strip_prefix(b"CLOSE").unwrap_or(&a));
                    if close {
                        break;
                    }
                }
            }
        });
        (address, accepted)
    }

    fn page(body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// Fetches `/metrics` from `address` once per `(max_body_bytes, timeout_ms)`, in turn, on
    /// one runtime (kept-alive connections live on the runtime that dialled them).
    fn run(address: &str, each: &[(usize, u64)]) -> Vec<Fetched> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        let pool = Connections::default();
        let f = Fetch {
            id: 1,
            address: address.to_string(),
            path: "/metrics".into(),
        };
        local.block_on(&rt, async {
            let mut out = Vec::new();
            for &(max_body_bytes, ms) in each {
                let limits = Limits {
                    timeout: Duration::from_millis(ms),
                    max_body_bytes,
                };
                out.push(fetch(&pool, &f, limits).await);
            }
            out
        })
    }

    fn body(f: Fetched) -> Option<String> {
        match f {
            Fetched::Page(b) => Some(String::from_utf8(b.to_vec()).unwrap()),
            _ => None,
        }
    }

    #[test]
    fn pages_statuses_and_limits() {
        let (address, accepted) = serve(vec![
            page("a 1\n"),
            page("b 2\n"),
            b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n".to_vec(),
            page(&"x".repeat(100)),
        ]);
        let mut out = run(
            &address,
            &[
                (1 << 20, 1000),
                (1 << 20, 1000),
                (1 << 20, 1000),
                (10, 1000),
            ],
        )
        .into_iter();
        assert_eq!(out.next().and_then(body).as_deref(), Some("a 1\n"));
        assert_eq!(out.next().and_then(body).as_deref(), Some("b 2\n"));
        assert!(matches!(out.next(), Some(Fetched::Failed)));
        assert!(matches!(out.next(), Some(Fetched::TooLarge)));
        // The first three answers came over one kept-alive connection.
        assert_eq!(*accepted.lock().unwrap(), 1);
    }

    #[test]
    fn a_closed_connection_is_redialled_once() {
        let mut closing = b"CLOSE".to_vec();
        closing.extend(page("first\n"));
        let (address, accepted) = serve(vec![closing, page("second\n")]);
        let mut out = run(&address, &[(1 << 20, 1000), (1 << 20, 1000)]).into_iter();
        assert_eq!(out.next().and_then(body).as_deref(), Some("first\n"));
        assert_eq!(out.next().and_then(body).as_deref(), Some("second\n"));
        assert_eq!(*accepted.lock().unwrap(), 2);
    }

    #[test]
    fn unreachable_and_stalled_servers_fail_within_the_timeout() {
        // Nothing listens on a port just released.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = free.local_addr().unwrap().to_string();
        drop(free);
        assert!(matches!(
            run(&address, &[(1 << 20, 1000)])[..],
            [Fetched::Failed]
        ));
        // A server that sends headers and then nothing.
        let (address, _) = serve(vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial".to_vec(),
        ]);
        let start = Instant::now();
        assert!(matches!(
            run(&address, &[(1 << 20, 200)])[..],
            [Fetched::Failed]
        ));
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    struct Recorder {
        address: String,
        left: Mutex<u32>,
        pages: Mutex<Vec<(u64, Option<String>)>>,
    }

    impl ScrapeDriver for Recorder {
        fn due(&self, _now_ms: u64) -> (Vec<Fetch>, u64) {
            let mut left = self.left.lock().unwrap();
            // One at a time: the test server answers one connection at a time.
            let finished = self.pages.lock().unwrap().len() as u32;
            if *left == 0 || finished + *left < 2 {
                return (Vec::new(), 5);
            }
            *left -= 1;
            let f = Fetch {
                id: u64::from(*left),
                address: self.address.clone(),
                path: "/metrics".into(),
            };
            (vec![f], 5)
        }
        fn done(&self, id: u64, fetched: Fetched) {
            self.pages.lock().unwrap().push((id, body(fetched)));
        }
    }

    #[test]
    fn the_thread_fetches_what_the_driver_asks_and_stops_when_dropped() {
        let (address, _) = serve(vec![page("one\n"), page("two\n")]);
        let driver = Arc::new(Recorder {
            address,
            left: Mutex::new(2),
            pages: Mutex::new(Vec::new()),
        });
        let weak: Weak<dyn ScrapeDriver> =
            Arc::downgrade(&(driver.clone() as Arc<dyn ScrapeDriver>));
        let thread = DirectScraper::start(
            weak,
            Limits {
                timeout: Duration::from_secs(1),
                max_body_bytes: 1 << 20,
            },
        )
        .unwrap();
        let start = Instant::now();
        while driver.pages.lock().unwrap().len() < 2 && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(thread);
        let mut pages = driver.pages.lock().unwrap().clone();
        pages.sort();
        assert_eq!(
            pages,
            vec![
                (0, Some("two\n".to_string())),
                (1, Some("one\n".to_string()))
            ]
        );
    }
}
