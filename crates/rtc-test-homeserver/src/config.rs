//! What a test server looks like: [`HomeserverConfig`] and the files rendered from it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::wire;

/// A rate limit that no test reaches: 10 000 per second with a burst of 100 000.
const HIGH_PER_SECOND: f64 = 10_000.0;
const HIGH_BURST: u32 = 100_000;

/// How a test server is set up. [`Default`] is what most tests want: sticky events (MSC4354),
/// delayed events (MSC4140, up to 24 h, 1 000 per user) and the RTC transports endpoint (MSC4143)
/// on, every rate limit raised out of reach.
///
/// Each `with_*` method changes one aspect and returns the config:
///
/// ```
/// use rtc_test_homeserver::HomeserverConfig;
///
/// // Synapse's own limit for delayed-event management (1/s, burst 5), to exercise 429 handling.
/// let config = HomeserverConfig::default().with_rc_delayed_event_mgmt(1.0, 5);
/// // A server without delayed events.
/// let config = HomeserverConfig::default().with_delayed_events(false);
/// ```
#[derive(Clone, Debug)]
pub struct HomeserverConfig {
    label: Option<String>,
    sticky_events: bool,
    delayed_events: bool,
    max_delay_ms: u64,
    max_delayed_events_per_user: u32,
    rtc_transports: bool,
    /// The advertised transports (`matrix_rtc.transports`); `None`: one LiveKit transport at
    /// `https://lk.invalid`.
    rtc_transport_list: Option<Vec<Value>>,
    /// The JWT service stand-in as an MSC4512 application-service proxy for `rtc/livekit`.
    livekit_appservice: Option<LiveKitAppservice>,
    /// Dotted config path → (per_second, burst_count). Keys absent here use Synapse's defaults.
    rate_limits: BTreeMap<String, (f64, u32)>,
    extra: Map<String, Value>,
    start_timeout: Duration,
}

impl Default for HomeserverConfig {
    fn default() -> Self {
        Self {
            label: None,
            sticky_events: true,
            delayed_events: true,
            max_delay_ms: 24 * 60 * 60 * 1000,
            max_delayed_events_per_user: 1000,
            rtc_transports: true,
            rtc_transport_list: None,
            livekit_appservice: None,
            rate_limits: wire::RATE_LIMIT_KEYS
                .iter()
                .map(|key| ((*key).to_owned(), (HIGH_PER_SECOND, HIGH_BURST)))
                .collect(),
            extra: Map::new(),
            start_timeout: Duration::from_secs(60),
        }
    }
}

impl HomeserverConfig {
    /// Names the server's run directory (`.build/synapse-runs/<label>-<pid>-<n>`). Without a
    /// label the current thread's name is used, which under `cargo test` and nextest is the
    /// test's name.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Turns sticky events (MSC4354, `experimental_features.msc4354_enabled`) on or off.
    /// When off, Synapse ignores the sticky query parameter and `/versions` reports
    /// `org.matrix.msc4354: false`.
    pub fn with_sticky_events(mut self, enabled: bool) -> Self {
        self.sticky_events = enabled;
        self
    }

    /// Turns delayed events (MSC4140) on or off. When off, `max_event_delay_duration` is left out
    /// and `msc4140_max_delayed_events_per_user` is 0: delayed sends get 403 and `/versions`
    /// reports `org.matrix.msc4140: false`.
    pub fn with_delayed_events(mut self, enabled: bool) -> Self {
        self.delayed_events = enabled;
        self
    }

    /// The longest delay Synapse accepts (`max_event_delay_duration`, advertised as
    /// `max_delay_ms`). Default 24 h. Must be above 0.
    pub fn with_max_delay_ms(mut self, max_delay_ms: u64) -> Self {
        self.max_delay_ms = max_delay_ms.max(1);
        self
    }

    /// How many delayed events one user may have scheduled
    /// (`msc4140_max_delayed_events_per_user`, advertised as `max_scheduled`). Default 1 000.
    /// Must be above 0; use [`with_delayed_events(false)`](Self::with_delayed_events) to turn
    /// the feature off.
    pub fn with_max_delayed_events_per_user(mut self, max: u32) -> Self {
        self.max_delayed_events_per_user = max.max(1);
        self
    }

    /// Turns the RTC transports endpoint (MSC4143, one LiveKit transport at
    /// `https://lk.invalid`) on or off.
    pub fn with_rtc_transports(mut self, enabled: bool) -> Self {
        self.rtc_transports = enabled;
        self
    }

    /// Advertises these RTC transports (`matrix_rtc.transports`, served by
    /// `GET …/org.matrix.msc4143/rtc/transports`) instead of the default LiveKit transport at
    /// `https://lk.invalid`, and turns the endpoint on. Synapse refuses to start when a
    /// `livekit` entry has neither `url` nor `livekit_service_url`.
    pub fn with_rtc_transport_list(mut self, transports: Vec<Value>) -> Self {
        self.rtc_transports = true;
        self.rtc_transport_list = Some(transports);
        self
    }

    /// Advertises one LiveKit transport whose JWT service is at `url` (for instance the
    /// [`JwtService`](crate::JwtService) stand-in's [`url`](crate::JwtService::url)) instead of
    /// `https://lk.invalid`.
    pub fn with_livekit_service_url(self, url: &str) -> Self {
        self.with_rtc_transport_list(vec![
            json!({ "type": "livekit", "livekit_service_url": url }),
        ])
    }

    /// Registers an application service that Synapse reverse-proxies `/_matrix/client/
    /// {unstable/<ns>,v<N>}/rtc/livekit/*` to (MSC4512, `experimental_features.msc4512_enabled`):
    /// how a homeserver serves the MSC4195 token endpoint. Synapse authenticates the user and
    /// forwards the request with the `hs_token` and an `X-Matrix-User-Identifier` header.
    pub fn with_livekit_appservice(mut self, appservice: LiveKitAppservice) -> Self {
        self.livekit_appservice = Some(appservice);
        self
    }

    /// Whether the advertised transports were set explicitly.
    pub fn has_rtc_transport_list(&self) -> bool {
        self.rtc_transport_list.is_some()
    }

    /// Sets one Synapse rate limit by its dotted config path (`"rc_message"`,
    /// `"rc_login.address"`, …). Every limit the harness knows is raised out of reach by default.
    pub fn with_rate_limit(mut self, key: &str, per_second: f64, burst_count: u32) -> Self {
        self.rate_limits
            .insert(key.to_owned(), (per_second, burst_count));
        self
    }

    /// Sets `rc_delayed_event_mgmt`: restart, cancel, send and the GETs of delayed events, per
    /// user. Synapse's own default is 1 per second with a burst of 5.
    pub fn with_rc_delayed_event_mgmt(self, per_second: f64, burst_count: u32) -> Self {
        self.with_rate_limit("rc_delayed_event_mgmt", per_second, burst_count)
    }

    /// Sets `rc_message`: sending events, including scheduling delayed ones. Synapse's own
    /// default is 0.2 per second with a burst of 10.
    pub fn with_rc_message(self, per_second: f64, burst_count: u32) -> Self {
        self.with_rate_limit("rc_message", per_second, burst_count)
    }

    /// Leaves one rate limit (dotted config path) at Synapse's default.
    pub fn with_default_rate_limit(mut self, key: &str) -> Self {
        self.rate_limits.remove(key);
        self
    }

    /// Leaves every rate limit at Synapse's defaults.
    pub fn with_default_rate_limits(mut self) -> Self {
        self.rate_limits.clear();
        self
    }

    /// Sets any top-level key of `homeserver.yaml`, replacing what the harness would write there
    /// (escape hatch for settings this builder does not cover).
    pub fn with_extra_config(mut self, key: impl Into<String>, value: Value) -> Self {
        self.extra.insert(key.into(), value);
        self
    }

    /// How long a start or restart waits for `/versions` to answer. Default 60 s.
    pub fn with_start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    pub(crate) fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    pub(crate) fn start_timeout(&self) -> Duration {
        self.start_timeout
    }

    /// The contents of `homeserver.yaml`, as JSON (a subset of YAML).
    pub(crate) fn homeserver_yaml(&self, run_dir: &Path, port: u16) -> Value {
        let path = |name: &str| Value::String(run_dir.join(name).to_string_lossy().into_owned());
        let mut experimental = Map::new();
        experimental.insert("msc4354_enabled".into(), json!(self.sticky_events));
        experimental.insert("msc4143_enabled".into(), json!(self.rtc_transports));
        if self.livekit_appservice.is_some() {
            experimental.insert("msc4512_enabled".into(), json!(true));
        }
        experimental.insert(
            "msc4140_max_delayed_events_per_user".into(),
            json!(if self.delayed_events {
                self.max_delayed_events_per_user
            } else {
                0
            }),
        );

        let mut map = into_object(json!({
            "server_name": wire::SERVER_NAME,
            "report_stats": false,
            "listeners": [{
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": false,
                "x_forwarded": false,
                // `openid`: `/_matrix/federation/v1/openid/userinfo`, with which a LiveKit JWT
                // service (the stand-in) checks OpenID tokens; nothing else of federation.
                "resources": [{ "names": ["client", "openid"], "compress": false }],
            }],
            "database": { "name": "sqlite3", "args": { "database": path("homeserver.db") } },
            "media_store_path": path("media_store"),
            "signing_key_path": path("localhost.signing.key"),
            "pid_file": path("homeserver.pid"),
            "log_config": path("log_config.yaml"),
            "registration_shared_secret": wire::REGISTRATION_SHARED_SECRET,
            "bcrypt_rounds": 4,
            "trusted_key_servers": [],
            "suppress_key_server_warning": true,
            "federation_domain_whitelist": [],
            "presence": { "enabled": false },
            "caches": { "sync_response_cache_duration": 0 },
            "experimental_features": experimental,
        }));
        if self.delayed_events {
            map.insert("max_event_delay_duration".into(), json!(self.max_delay_ms));
        }
        if self.rtc_transports {
            let transports = self.rtc_transport_list.clone().unwrap_or_else(|| {
                vec![json!({ "type": "livekit", "livekit_service_url": "https://lk.invalid" })]
            });
            map.insert("matrix_rtc".into(), json!({ "transports": transports }));
        }
        if self.livekit_appservice.is_some() {
            map.insert(
                "app_service_config_files".into(),
                json!([path(LIVEKIT_APPSERVICE_FILE)]),
            );
        }
        for (key, (per_second, burst_count)) in &self.rate_limits {
            insert_dotted(
                &mut map,
                key,
                json!({ "per_second": per_second, "burst_count": burst_count }),
            );
        }
        for (key, value) in &self.extra {
            map.insert(key.clone(), value.clone());
        }
        Value::Object(map)
    }

    /// The Python logging config: everything at INFO into `homeserver.log` in the run dir.
    pub(crate) fn log_config_yaml(run_dir: &Path) -> Value {
        json!({
            "version": 1,
            "formatters": { "precise": {
                "format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s",
            } },
            "handlers": { "file": {
                "class": "logging.FileHandler",
                "formatter": "precise",
                "filename": run_dir.join(LOG_FILE).to_string_lossy(),
                "encoding": "utf8",
            } },
            "loggers": { "synapse.storage.SQL": { "level": "INFO" } },
            "root": { "level": "INFO", "handlers": ["file"] },
            "disable_existing_loggers": false,
        })
    }

    /// The application-service registration of [`HomeserverConfig::with_livekit_appservice`], as
    /// JSON (a subset of YAML).
    pub(crate) fn livekit_appservice_yaml(&self) -> Option<Value> {
        let appservice = self.livekit_appservice.as_ref()?;
        Some(json!({
            "id": "livekit-jwt-stand-in",
            // No transactions: the service only answers proxied requests.
            "url": null,
            "as_token": appservice.as_token,
            "hs_token": appservice.hs_token,
            "sender_localpart": "livekit-jwt-stand-in",
            "namespaces": { "users": [], "aliases": [], "rooms": [] },
            "rate_limited": false,
            "io.element.msc4512.proxy_prefix": "rtc/livekit",
            "io.element.msc4512.proxy_url": appservice.proxy_url,
        }))
    }
}

/// An application service that serves `rtc/livekit/*` behind Synapse (MSC4512); see
/// [`HomeserverConfig::with_livekit_appservice`] and
/// [`JwtService::appservice`](crate::JwtService::appservice).
#[derive(Clone, PartialEq, Eq)]
pub struct LiveKitAppservice {
    /// Where Synapse forwards the requests (`http://127.0.0.1:<port>`, no trailing slash).
    pub proxy_url: String,
    /// The token Synapse sends to the service.
    pub hs_token: String,
    /// The token the service would use towards Synapse.
    pub as_token: String,
}

impl std::fmt::Debug for LiveKitAppservice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveKitAppservice")
            .field("proxy_url", &self.proxy_url)
            .finish_non_exhaustive()
    }
}

/// The registration file of [`HomeserverConfig::with_livekit_appservice`] in a run dir.
pub(crate) const LIVEKIT_APPSERVICE_FILE: &str = "livekit-appservice.yaml";

/// Synapse's log file inside a run dir.
pub(crate) const LOG_FILE: &str = "homeserver.log";

/// The map inside an object literal.
fn into_object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Inserts `value` at a dotted path (`"rc_login.address"`), creating objects on the way.
fn insert_dotted(map: &mut Map<String, Value>, dotted: &str, value: Value) {
    match dotted.split_once('.') {
        None => {
            map.insert(dotted.to_owned(), value);
        }
        Some((head, rest)) => {
            let entry = map
                .entry(head.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            if let Value::Object(inner) = entry {
                insert_dotted(inner, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_has_every_feature_and_high_limits() {
        let config = HomeserverConfig::default().homeserver_yaml(Path::new("/r"), 1234);
        assert_eq!(config["listeners"][0]["port"], 1234);
        assert_eq!(
            config["listeners"][0]["bind_addresses"],
            json!(["127.0.0.1"])
        );
        assert_eq!(config["experimental_features"]["msc4354_enabled"], true);
        assert_eq!(config["experimental_features"]["msc4143_enabled"], true);
        assert_eq!(
            config["experimental_features"]["msc4140_max_delayed_events_per_user"],
            1000
        );
        assert_eq!(config["max_event_delay_duration"], 86_400_000);
        assert_eq!(config["rc_login"]["address"]["burst_count"], 100_000);
        assert_eq!(config["rc_delayed_event_mgmt"]["per_second"], 10_000.0);
        assert_eq!(config["database"]["args"]["database"], "/r/homeserver.db");
        assert_eq!(config["caches"]["sync_response_cache_duration"], 0);
    }

    #[test]
    fn switches_turn_features_off() {
        let config = HomeserverConfig::default()
            .with_delayed_events(false)
            .with_sticky_events(false)
            .with_rtc_transports(false)
            .with_rc_delayed_event_mgmt(1.0, 5)
            .with_default_rate_limit("rc_message")
            .homeserver_yaml(Path::new("/r"), 1);
        assert!(config.get("max_event_delay_duration").is_none());
        assert!(config.get("matrix_rtc").is_none());
        assert!(config.get("rc_message").is_none());
        assert_eq!(
            config["experimental_features"]["msc4140_max_delayed_events_per_user"],
            0
        );
        assert_eq!(config["experimental_features"]["msc4354_enabled"], false);
        assert_eq!(
            config["rc_delayed_event_mgmt"],
            json!({ "per_second": 1.0, "burst_count": 5 })
        );
    }

    #[test]
    fn livekit_options_replace_the_default_transport_and_register_the_proxy() {
        let default = HomeserverConfig::default().homeserver_yaml(Path::new("/r"), 1);
        assert_eq!(
            default["listeners"][0]["resources"][0]["names"],
            json!(["client", "openid"])
        );
        assert!(default.get("app_service_config_files").is_none());
        assert!(
            HomeserverConfig::default()
                .livekit_appservice_yaml()
                .is_none()
        );

        let appservice = LiveKitAppservice {
            proxy_url: "http://127.0.0.1:9".to_owned(),
            hs_token: "hs".to_owned(),
            as_token: "as".to_owned(),
        };
        assert!(!format!("{appservice:?}").contains("\"hs\""));
        let config = HomeserverConfig::default()
            .with_rtc_transports(false)
            .with_livekit_service_url("http://127.0.0.1:9")
            .with_livekit_appservice(appservice);
        assert!(config.has_rtc_transport_list());
        let yaml = config.homeserver_yaml(Path::new("/r"), 1);
        assert_eq!(
            yaml["matrix_rtc"]["transports"],
            json!([{ "type": "livekit", "livekit_service_url": "http://127.0.0.1:9" }])
        );
        assert_eq!(yaml["experimental_features"]["msc4143_enabled"], true);
        assert_eq!(yaml["experimental_features"]["msc4512_enabled"], true);
        assert_eq!(
            yaml["app_service_config_files"],
            json!(["/r/livekit-appservice.yaml"])
        );
        let registration = config.livekit_appservice_yaml().unwrap();
        assert_eq!(
            registration["io.element.msc4512.proxy_prefix"],
            "rtc/livekit"
        );
        assert_eq!(
            registration["io.element.msc4512.proxy_url"],
            "http://127.0.0.1:9"
        );
        assert_eq!(registration["hs_token"], "hs");
    }

    #[test]
    fn default_rate_limits_leave_no_rc_key() {
        let config = HomeserverConfig::default()
            .with_default_rate_limits()
            .homeserver_yaml(Path::new("/r"), 1);
        let Value::Object(map) = config else {
            panic!("an object")
        };
        assert!(map.keys().all(|key| !key.starts_with("rc_")));
    }
}
