//! [`JwtService`]: a stand-in for a LiveKit JWT service (lk-jwt-service), on 127.0.0.1.
//!
//! lk-jwt-service cannot be installed from the package registries this project reaches, so
//! tests run `jwt_service.py` (beside this file) instead: a small Python HTTP server that
//! follows lk-jwt-service's documented requests and answers, verifies OpenID tokens against
//! the real Synapse (`GET /_matrix/federation/v1/openid/userinfo`), and mints real LiveKit
//! JWTs with the `livekit-api` package ([`LIVEKIT_API_VERSION`](crate::LIVEKIT_API_VERSION),
//! installed into the Synapse venv by `scripts/install-synapse.sh`). The script's doc lists
//! what it implements and what it does not.
//!
//! ```no_run
//! use rtc_test_homeserver::{HomeserverConfig, TestHomeserver};
//!
//! # async fn example() -> rtc_test_homeserver::Result<()> {
//! // Synapse advertises the stand-in as its LiveKit transport.
//! let (server, jwt) = TestHomeserver::start_with_jwt_service(HomeserverConfig::default()).await?;
//! // ... a client joins and fetches credentials ...
//! let requests = jwt.requests().await?; // what the stand-in was asked
//! # let token = String::new();
//! let claims = jwt.verify(&token)?; // signature, expiry; the claims
//! # Ok(())
//! # }
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::{HomeserverConfig, LiveKitAppservice};
use crate::error::{Error, Result};
use crate::install::{ensure_synapse, tail};
use crate::names::unique_id;
use crate::process::SynapseProcess;
use crate::server::{KEEP_RUNS_ENV_VAR, TestHomeserver, create_run_dir};

/// The script, written into the stand-in's run dir at start.
const SCRIPT: &str = include_str!("jwt_service.py");
const SCRIPT_FILE: &str = "jwt_service.py";
const PORT_FILE: &str = "jwt_service.port";
const OUTPUT_FILE: &str = "jwt_service.out";
/// How long a start waits for the stand-in to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const READY_POLL: Duration = Duration::from_millis(25);
/// The SFU URL the stand-in hands out. No SFU is behind it.
const SFU_URL: &str = "wss://sfu.stand-in.invalid";

/// A request the stand-in's token endpoints received: method, path and the status answered.
/// (Bodies are not kept: they hold OpenID tokens.)
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct JwtServiceRequest {
    /// `POST` (or whatever the client used).
    pub method: String,
    /// The path, without a query.
    pub path: String,
    /// The status the stand-in answered.
    pub status: u16,
}

/// The stand-in LiveKit JWT service (see the module doc). Dropping it kills the process and
/// deletes its run dir (kept when the test panicked or `RTC_SYNAPSE_KEEP_RUNS` is set).
pub struct JwtService {
    process: SynapseProcess,
    run_dir: PathBuf,
    url: String,
    api_key: String,
    api_secret: String,
    hs_token: String,
    as_token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for JwtService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtService")
            .field("url", &self.url)
            .field("run_dir", &self.run_dir)
            .finish_non_exhaustive()
    }
}

impl JwtService {
    /// `POST {url}/get_token`: the "Matrix 2.0" endpoint.
    pub const GET_TOKEN_PATH: &'static str = "/get_token";
    /// `POST {url}/sfu/get`: the legacy endpoint.
    pub const LEGACY_SFU_GET_PATH: &'static str = "/sfu/get";
    /// The homeserver endpoint (js-sdk 43's unstable path), reached through Synapse's MSC4512
    /// proxy.
    pub const HOMESERVER_UNSTABLE_PATH: &'static str =
        "/_matrix/client/unstable/io.element.msc4195/rtc/livekit/get_token";
    /// The homeserver endpoint, stable path (MSC4195).
    pub const HOMESERVER_STABLE_PATH: &'static str = "/_matrix/client/v1/rtc/livekit/get_token";

    /// Starts the stand-in on a free port of 127.0.0.1 and waits until it answers. It trusts
    /// no homeserver until [`trust_homeserver`](Self::trust_homeserver).
    pub async fn start() -> Result<Self> {
        let python = ensure_synapse().await?;
        let label = std::thread::current()
            .name()
            .filter(|name| *name != "main")
            .map(|name| format!("{name}-jwt"))
            .unwrap_or_else(|| "jwt-service".to_owned());
        let run_dir = create_run_dir(Some(&label))?;
        let script = run_dir.join(SCRIPT_FILE);
        std::fs::write(&script, SCRIPT)
            .map_err(|e| Error::io(format!("writing {}", script.display()), e))?;
        let api_key = unique_id("lk-key");
        let api_secret = secret("lk-secret");
        let hs_token = secret("hs-token");
        let as_token = secret("as-token");

        let mut command = std::process::Command::new(&python);
        command
            .arg(&script)
            .arg("--port-file")
            .arg(run_dir.join(PORT_FILE))
            .env("LIVEKIT_API_KEY", &api_key)
            .env("LIVEKIT_API_SECRET", &api_secret)
            .env("STAND_IN_HS_TOKEN", &hs_token)
            .env("STAND_IN_SFU_URL", SFU_URL)
            .env("PYTHONDONTWRITEBYTECODE", "1");
        let mut process = SynapseProcess::spawn_command(command, &run_dir, OUTPUT_FILE)
            .await
            .map_err(|e| Error::io(format!("spawning {}", python.display()), e))?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()?;

        let started = Instant::now();
        let port = loop {
            if let Some(status) = process
                .try_wait()
                .map_err(|e| Error::io("checking on the jwt service", e))?
            {
                return Err(Error::Exited {
                    status: status.to_string(),
                    log_tail: output_tail(&run_dir),
                    run_dir,
                });
            }
            let text = std::fs::read_to_string(run_dir.join(PORT_FILE)).unwrap_or_default();
            if let Ok(port) = text.trim().parse::<u16>() {
                break port;
            }
            if started.elapsed() > START_TIMEOUT {
                let _ = process.kill();
                return Err(Error::StartTimeout {
                    timeout: START_TIMEOUT,
                    log_tail: output_tail(&run_dir),
                    run_dir,
                });
            }
            tokio::time::sleep(READY_POLL).await;
        };
        let service = Self {
            process,
            run_dir,
            url: format!("http://127.0.0.1:{port}"),
            api_key,
            api_secret,
            hs_token,
            as_token,
            http,
        };
        service
            .control(reqwest::Method::GET, "health", None)
            .await?;
        tracing::info!(url = %service.url, elapsed = ?started.elapsed(), "jwt service stand-in is ready");
        Ok(service)
    }

    /// Its base URL, `http://127.0.0.1:<port>`: the `livekit_service_url` to advertise.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The SFU URL it hands out (`wss://sfu.stand-in.invalid`: nothing answers there).
    pub fn sfu_url(&self) -> &str {
        SFU_URL
    }

    /// The LiveKit API key its JWTs carry as `iss`.
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// The LiveKit API secret its JWTs are signed with (HS256).
    pub fn api_secret(&self) -> &str {
        &self.api_secret
    }

    /// The transport that names it as the JWT service: `{type: livekit, livekit_service_url}`.
    pub fn service_transport(&self) -> Value {
        json!({ "type": "livekit", "livekit_service_url": self.url })
    }

    /// The transport that names only its SFU: `{type: livekit, url}`; tokens then come from
    /// the homeserver, which needs [`appservice`](Self::appservice).
    pub fn sfu_transport(&self) -> Value {
        json!({ "type": "livekit", "url": SFU_URL })
    }

    /// Its registration as Synapse's MSC4512 proxy for `rtc/livekit`, for
    /// [`HomeserverConfig::with_livekit_appservice`].
    pub fn appservice(&self) -> LiveKitAppservice {
        LiveKitAppservice {
            proxy_url: self.url.clone(),
            hs_token: self.hs_token.clone(),
            as_token: self.as_token.clone(),
        }
    }

    /// Trusts `server` for OpenID tokens naming its server name: they are checked with
    /// `GET {base_url}/_matrix/federation/v1/openid/userinfo`.
    pub async fn trust_homeserver(&self, server: &TestHomeserver) -> Result<()> {
        self.configure(json!({
            "homeserver_url": server.base_url(),
            "server_name": server.server_name(),
        }))
        .await
    }

    /// Makes these paths answer 404 as a service (or homeserver) without them would: for
    /// instance `[JwtService::GET_TOKEN_PATH]` for a service that only has `/sfu/get`. An empty
    /// list serves every endpoint again.
    pub async fn set_disabled_paths(&self, paths: &[&str]) -> Result<()> {
        self.configure(json!({ "disabled_paths": paths })).await
    }

    /// Makes every token endpoint refuse with this status and `{errcode, error}`; `None`
    /// serves tokens again.
    pub async fn set_refusal(&self, refusal: Option<(u16, &str, &str)>) -> Result<()> {
        let refuse = refusal.map(|(status, errcode, error)| {
            json!({ "status": status, "errcode": errcode, "error": error })
        });
        self.configure(json!({ "refuse": refuse })).await
    }

    /// How long the JWTs it mints are valid (default 1 h, as lk-jwt-service).
    pub async fn set_token_lifetime(&self, lifetime: Duration) -> Result<()> {
        self.configure(json!({ "ttl_seconds": lifetime.as_secs().max(1) }))
            .await
    }

    /// Every request its token endpoints received, oldest first.
    pub async fn requests(&self) -> Result<Vec<JwtServiceRequest>> {
        let answer = self.control(reqwest::Method::GET, "requests", None).await?;
        serde_json::from_value(answer).map_err(|e| Error::InvalidResponse {
            path: "/_stand_in/requests".to_owned(),
            reason: e.to_string(),
        })
    }

    /// The OpenID access tokens its endpoints received, oldest first: secrets a test can
    /// look for in its logs.
    pub async fn received_openid_tokens(&self) -> Result<Vec<String>> {
        let answer = self
            .control(reqwest::Method::GET, "openid_tokens", None)
            .await?;
        serde_json::from_value(answer).map_err(|e| Error::InvalidResponse {
            path: "/_stand_in/openid_tokens".to_owned(),
            reason: e.to_string(),
        })
    }

    /// Checks a JWT as an SFU would: the HS256 signature with [`api_secret`](Self::api_secret),
    /// the issuer [`api_key`](Self::api_key), and that it has not expired. Returns its claims.
    /// Implemented here (not by the library that minted it), so the check is independent.
    pub fn verify(&self, jwt: &str) -> Result<Value> {
        let invalid = |reason: &str| Error::InvalidResponse {
            path: "jwt".to_owned(),
            reason: reason.to_owned(),
        };
        let mut parts = jwt.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("not three parts"));
        };
        let decode = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| invalid("not base64url"))
        };
        let header: Value =
            serde_json::from_slice(&decode(header)?).map_err(|_| invalid("header not JSON"))?;
        if header["alg"] != "HS256" {
            return Err(invalid("not HS256"));
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(self.api_secret.as_bytes())
            .map_err(|_| invalid("bad key"))?;
        mac.update(format!("{}.{payload}", jwt.split('.').next().unwrap_or_default()).as_bytes());
        mac.verify_slice(&decode(signature)?)
            .map_err(|_| invalid("bad signature"))?;
        let claims: Value =
            serde_json::from_slice(&decode(payload)?).map_err(|_| invalid("payload not JSON"))?;
        if claims["iss"] != self.api_key.as_str() {
            return Err(invalid("wrong issuer"));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if claims["exp"].as_u64().is_none_or(|exp| exp <= now) {
            return Err(invalid("expired or no exp"));
        }
        Ok(claims)
    }

    async fn configure(&self, update: Value) -> Result<()> {
        self.control(reqwest::Method::PUT, "config", Some(&update))
            .await
            .map(|_| ())
    }

    async fn control(
        &self,
        method: reqwest::Method,
        name: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let path = format!("/_stand_in/{name}");
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status != 200 {
            return Err(Error::Status {
                method: method.to_string(),
                path,
                status,
                body,
            });
        }
        Ok(body)
    }
}

impl Drop for JwtService {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let keep = std::thread::panicking()
            || std::env::var_os(KEEP_RUNS_ENV_VAR).is_some_and(|v| !v.is_empty() && v != "0");
        if keep {
            eprintln!(
                "rtc-test-homeserver: jwt service stand-in run dir kept at {}",
                self.run_dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.run_dir);
        }
    }
}

impl TestHomeserver {
    /// Starts a [`JwtService`] stand-in, then a server with `config` that advertises it as its
    /// LiveKit transport (unless `config` sets its own transports, for instance
    /// [`JwtService::sfu_transport`]) and proxies `rtc/livekit/*` to it (MSC4512), and makes
    /// the stand-in trust the server's OpenID tokens.
    pub async fn start_with_jwt_service(config: HomeserverConfig) -> Result<(Self, JwtService)> {
        let jwt = JwtService::start().await?;
        let mut config = config.with_livekit_appservice(jwt.appservice());
        if !config.has_rtc_transport_list() {
            config = config.with_livekit_service_url(jwt.url());
        }
        let server = Self::start_with(config).await?;
        jwt.trust_homeserver(&server).await?;
        Ok((server, jwt))
    }
}

/// A throwaway secret, unique in this process and across processes.
fn secret(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let seed = format!("{prefix}-{}-{nanos}-{n}", std::process::id());
    format!(
        "{prefix}-{}",
        URL_SAFE_NO_PAD.encode(Sha256::digest(seed.as_bytes()))
    )
}

fn output_tail(run_dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(run_dir.join(OUTPUT_FILE)).unwrap_or_default();
    tail(&text, 40)
}
