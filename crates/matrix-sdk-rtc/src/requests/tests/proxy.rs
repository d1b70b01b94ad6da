//! A fault-injecting HTTP proxy in front of the test Synapse, for faults a real server does not
//! produce on demand (a forgotten `pos`, a server without the per-action management path, a
//! server that ignores the delay parameter), and for the answers of endpoints no installable
//! server serves yet (the merged MSC4140 forms), with every request's body kept for the test to
//! check its shape.
//!
//! Every request is logged, may be rewritten or answered by the test's hook, and otherwise goes
//! to Synapse over a fresh connection. Each answer closes the connection (`Connection: close`),
//! which keeps the relaying trivial. Plain threads, so it needs no runtime.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex, PoisonError},
    thread,
};

/// A request as the proxy sees it; the hook may change its target (path and query).
#[derive(Debug, Clone)]
pub(crate) struct ProxiedRequest {
    pub(crate) method: String,
    /// Path and query, exactly as sent.
    pub(crate) target: String,
    /// The body, as sent (forwarded as it is after the hook).
    pub(crate) body: Vec<u8>,
    /// Whether the request carried an access token (`Authorization: Bearer`).
    pub(crate) authenticated: bool,
    /// Its `User-Agent` header.
    pub(crate) user_agent: Option<String>,
}

impl ProxiedRequest {
    /// The body as JSON (`null` when it is empty or not JSON).
    pub(crate) fn body_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    /// The path without the query.
    pub(crate) fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The raw (still encoded) value of a query parameter.
    pub(crate) fn query_param(&self, name: &str) -> Option<&str> {
        let query = self.target.split_once('?')?.1;
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
    }

    /// Replaces (or removes, with `None`) a query parameter; `value` must be encoded.
    pub(crate) fn set_query_param(&mut self, name: &str, value: Option<&str>) {
        let (path, query) = self.target.split_once('?').unwrap_or((&self.target, ""));
        let mut pairs: Vec<String> = query
            .split('&')
            .filter(|pair| !pair.is_empty() && pair.split('=').next() != Some(name))
            .map(str::to_owned)
            .collect();
        if let Some(value) = value {
            pairs.push(format!("{name}={value}"));
        }
        self.target = if pairs.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", pairs.join("&"))
        };
    }
}

/// A canned answer from the hook.
#[derive(Debug, Clone)]
pub(crate) struct CannedResponse {
    pub(crate) status: u16,
    pub(crate) body: String,
}

type Hook = Box<dyn FnMut(&mut ProxiedRequest) -> Option<CannedResponse> + Send>;

#[derive(Default)]
struct Shared {
    hook: Option<Hook>,
    /// Every request after the hook ran: `METHOD target`, and whether it was answered by the
    /// hook.
    log: Vec<(ProxiedRequest, bool)>,
}

/// The proxy; it lives until the test process ends.
#[derive(Clone)]
pub(crate) struct FaultProxy {
    url: String,
    shared: Arc<Mutex<Shared>>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://127.0.0.1:<port>`).
    pub(crate) fn start(upstream: &str) -> Self {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("plain http upstream")
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let shared = Arc::new(Mutex::new(Shared::default()));
        let accept_shared = Arc::clone(&shared);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let shared = Arc::clone(&accept_shared);
                let upstream = upstream.clone();
                thread::spawn(move || {
                    // A failed relay shows up in the test as a network error.
                    let _ = relay(stream, &upstream, &shared);
                });
            }
        });
        Self { url, shared }
    }

    /// The URL to give the client.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Sets the hook that sees (and may change or answer) every request.
    pub(crate) fn set_hook(
        &self,
        hook: impl FnMut(&mut ProxiedRequest) -> Option<CannedResponse> + Send + 'static,
    ) {
        self.lock().hook = Some(Box::new(hook));
    }

    /// Removes the hook.
    pub(crate) fn clear_hook(&self) {
        self.lock().hook = None;
    }

    /// The requests seen so far (after the hook), and whether the hook answered each.
    pub(crate) fn log(&self) -> Vec<(ProxiedRequest, bool)> {
        self.lock().log.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn relay(client: TcpStream, upstream: &str, shared: &Mutex<Shared>) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Ok(());
    };
    let (method, target) = (method.to_owned(), target.to_owned());

    let mut headers = Vec::new();
    let mut content_length = 0usize;
    let mut authenticated = false;
    let mut user_agent = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(length) = lower.strip_prefix("content-length:") {
            content_length = length.trim().parse().unwrap_or(0);
            // Sent again below, for the body as the hook left it.
            continue;
        }
        if lower.starts_with("authorization: bearer ") {
            authenticated = true;
        }
        if lower.starts_with("user-agent:") {
            user_agent = line
                .split_once(':')
                .map(|(_, value)| value.trim().to_owned());
        }
        if !lower.starts_with("connection:") && !lower.starts_with("keep-alive:") {
            headers.push(line);
        }
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body)?;
    let mut request = ProxiedRequest {
        method,
        target,
        body,
        authenticated,
        user_agent,
    };

    let canned = {
        let mut shared = shared.lock().unwrap_or_else(PoisonError::into_inner);
        let canned = shared.hook.as_mut().and_then(|hook| hook(&mut request));
        shared.log.push((request.clone(), canned.is_some()));
        canned
    };
    let mut client = client;
    if let Some(canned) = canned {
        let answer = format!(
            "HTTP/1.1 {} Canned\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{}",
            canned.status,
            canned.body.len(),
            canned.body
        );
        return client.write_all(answer.as_bytes());
    }

    let mut server = TcpStream::connect(upstream)?;
    let mut head = format!("{} {} HTTP/1.1\r\n", request.method, request.target);
    for header in headers {
        head.push_str(&header);
        head.push_str("\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n", request.body.len()));
    head.push_str("Connection: close\r\n\r\n");
    server.write_all(head.as_bytes())?;
    server.write_all(&request.body)?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer)?;
    // Make sure the client does not reuse this connection: it closes after the answer.
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(answer.len(), |i| i + 4);
    let (head, rest) = answer.split_at(split);
    let head = String::from_utf8_lossy(head);
    let mut new_head = String::new();
    for line in head.split("\r\n").filter(|line| !line.is_empty()) {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            new_head.push_str(line);
            new_head.push_str("\r\n");
        }
    }
    new_head.push_str("Connection: close\r\n\r\n");
    client.write_all(new_head.as_bytes())?;
    client.write_all(rest)
}

impl CannedResponse {
    /// A JSON answer.
    pub(crate) fn json(status: u16, body: &serde_json::Value) -> Self {
        Self {
            status,
            body: body.to_string(),
        }
    }
}

/// A Matrix error body.
pub(crate) fn matrix_error(status: u16, errcode: &str, message: &str) -> CannedResponse {
    CannedResponse {
        status,
        body: serde_json::json!({ "errcode": errcode, "error": message }).to_string(),
    }
}

#[test]
fn query_editing() {
    let mut request = ProxiedRequest {
        method: "POST".to_owned(),
        target: "/sync?timeout=0&pos=1%2Fs2&set_presence=offline".to_owned(),
        body: br#"{"a":1}"#.to_vec(),
        authenticated: true,
        user_agent: None,
    };
    assert_eq!(request.body_json(), serde_json::json!({"a": 1}));
    assert_eq!(request.path(), "/sync");
    assert_eq!(request.query_param("pos"), Some("1%2Fs2"));
    request.set_query_param("pos", Some("bogus"));
    assert_eq!(
        request.target,
        "/sync?timeout=0&set_presence=offline&pos=bogus"
    );
    request.set_query_param("timeout", None);
    request.set_query_param("set_presence", None);
    request.set_query_param("pos", None);
    assert_eq!(request.target, "/sync");
}
