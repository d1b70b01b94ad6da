//! Logging in: reach the homeserver, authenticate, check its features, sync once, start.
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use matrix_sdk::{
    Client, SessionMeta, SessionTokens,
    authentication::matrix::MatrixSession,
    config::{RequestConfig, SyncSettings},
    ruma::{OwnedDeviceId, OwnedRoomId, OwnedRoomOrAliasId, OwnedUserId, RoomAliasId},
    store::RoomLoadSettings,
};
use matrix_sdk_rtc::{
    MissingFeature, RtcClient, RtcConfig, ServerFeatures, SyncLoop, SyncLoopHandle, SyncLoopStatus,
};

use crate::cli::LoginArgs;

/// How long the first probe of the homeserver may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// The long-poll timeout of the main sync loop.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// A logged-in client that has synced once, with its RTC driver not started yet (subscribe to
/// what you need first, then call [`Connected::start`]).
#[derive(Debug)]
pub(crate) struct Connected {
    pub(crate) rtc: RtcClient,
    pub(crate) user_id: OwnedUserId,
    pub(crate) device_id: OwnedDeviceId,
    pub(crate) homeserver: String,
    next_batch: String,
    sync: Option<SyncLoopHandle>,
}

impl Connected {
    /// Reaches the homeserver, logs in, checks that it offers every feature in `needed`, and
    /// syncs once.
    pub(crate) async fn login(login: &LoginArgs, needed: &[MissingFeature]) -> Result<Self> {
        let homeserver = login.homeserver.clone();
        let mut builder = RtcClient::builder(&homeserver).config(RtcConfig::default());
        builder = match &login.store {
            Some(store) => builder.sqlite_store(store, login.store_passphrase.as_deref()),
            // Said on stderr at login: this device's keys live only as long as the process.
            None => builder.ephemeral_device(),
        };
        let rtc = builder.build().await.with_context(|| match &login.store {
            Some(store) => format!(
                "cannot use the homeserver URL {homeserver} with the store in {}",
                store.display()
            ),
            None => format!("cannot use the homeserver URL {homeserver}"),
        })?;
        let client = rtc.client().clone();
        client
            .fetch_server_versions(Some(
                RequestConfig::new().disable_retry().timeout(PROBE_TIMEOUT),
            ))
            .await
            .with_context(|| format!("cannot reach the homeserver at {homeserver}"))?;

        let (user_id, device_id) = match (&login.password, &login.access_token) {
            (Some(password), _) => {
                let answer = client
                    .matrix_auth()
                    .login_username(&login.user, password)
                    .initial_device_display_name("rtc command line")
                    .send()
                    .await
                    .with_context(|| {
                        format!("logging in as {} on {homeserver} failed", login.user)
                    })?;
                (answer.user_id, answer.device_id)
            }
            (None, Some(token)) => {
                restore(
                    &client,
                    &homeserver,
                    &login.user,
                    token,
                    login.device_id.as_deref(),
                )
                .await?
            }
            (None, None) => bail!("give --password or --access-token"),
        };
        // Which device this process is, and where its crypto store lives: two processes with
        // one device and two stores break that device's encryption.
        eprintln!("{}", device_line(&user_id, &device_id, login));

        let features = rtc
            .features()
            .await
            .with_context(|| format!("reading the features of {homeserver}"))?;
        require(&features, needed, &homeserver)?;

        let response = client
            .sync_once(SyncSettings::default().timeout(Duration::ZERO))
            .await
            .with_context(|| format!("the first sync with {homeserver} failed"))?;
        Ok(Self {
            rtc,
            user_id,
            device_id,
            homeserver,
            next_batch: response.next_batch,
            sync: None,
        })
    }

    /// Starts the main sync loop (supervised: it retries every failure with backoff and
    /// prints on stderr when it fails and when it recovers) and the RTC driver.
    pub(crate) async fn start(&mut self) -> Result<()> {
        let sync = SyncLoop::new(self.rtc.client().clone())
            .with_poll_timeout(SYNC_TIMEOUT)
            .spawn(Some(self.next_batch.clone()));
        let mut status = sync.subscribe_status();
        tokio::spawn(async move {
            while let Some(status) = status.next().await {
                match status {
                    SyncLoopStatus::Retrying {
                        error,
                        attempts,
                        retry_in,
                    } => eprintln!(
                        "sync: {error}; attempt {attempts}, retrying in {} ms",
                        retry_in.as_millis()
                    ),
                    SyncLoopStatus::Running => eprintln!("sync: running"),
                    SyncLoopStatus::Stopped { reason } => eprintln!("sync: stopped ({reason:?})"),
                    _ => {}
                }
            }
        });
        self.sync = Some(sync);
        self.rtc
            .start()
            .await
            .context("starting the rtc driver failed")
    }

    /// The room ID of `room` (an alias is resolved), checking that we are joined to it.
    pub(crate) async fn joined_room(&self, room: &OwnedRoomOrAliasId) -> Result<OwnedRoomId> {
        let room_id = self.room_id(room).await?;
        let joined = self
            .rtc
            .client()
            .get_room(&room_id)
            .is_some_and(|room| room.state() == matrix_sdk::RoomState::Joined);
        if !joined {
            bail!("{} is not joined to {room}", self.user_id);
        }
        Ok(room_id)
    }

    /// The room ID of `room`, resolving an alias.
    pub(crate) async fn room_id(&self, room: &OwnedRoomOrAliasId) -> Result<OwnedRoomId> {
        match OwnedRoomId::try_from(room.as_str()) {
            Ok(room_id) => Ok(room_id),
            Err(_) => {
                let alias = <&RoomAliasId>::try_from(room.as_str())
                    .with_context(|| format!("{room} is neither a room ID nor an alias"))?;
                let answer = self
                    .rtc
                    .client()
                    .resolve_room_alias(alias)
                    .await
                    .with_context(|| format!("cannot resolve the room alias {room}"))?;
                Ok(answer.room_id)
            }
        }
    }

    /// Stops the driver and the sync loop, without leaving calls.
    pub(crate) fn shutdown(&mut self) {
        self.rtc.shutdown();
        if let Some(sync) = self.sync.take() {
            sync.stop();
        }
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Restores a session from an access token, asking the server who it belongs to.
async fn restore(
    client: &Client,
    homeserver: &str,
    user: &str,
    token: &str,
    device_id: Option<&str>,
) -> Result<(OwnedUserId, OwnedDeviceId)> {
    let user_id = OwnedUserId::try_from(user)
        .with_context(|| format!("--user must be a full Matrix ID with --access-token: {user}"))?;
    let device_id = match device_id {
        Some(device_id) => OwnedDeviceId::from(device_id),
        None => token_owner(homeserver, &user_id, token).await?,
    };
    let session = MatrixSession {
        meta: SessionMeta {
            user_id: user_id.clone(),
            device_id: device_id.clone(),
        },
        tokens: SessionTokens {
            access_token: token.to_owned(),
            refresh_token: None,
        },
    };
    client
        .matrix_auth()
        .restore_session(session, RoomLoadSettings::default())
        .await
        .context("restoring the session failed")?;
    let whoami = client
        .whoami()
        .await
        .with_context(|| format!("{homeserver} refused the access token"))?;
    if whoami.user_id != user_id {
        bail!(
            "the access token belongs to {}, not to {user_id}",
            whoami.user_id
        );
    }
    if let Some(owner_device) = whoami.device_id
        && owner_device != device_id
    {
        bail!("the access token belongs to device {owner_device}, not to {device_id}");
    }
    Ok((user_id, device_id))
}

/// The device an access token belongs to, from `/whoami` on a throw-away client.
async fn token_owner(
    homeserver: &str,
    user_id: &OwnedUserId,
    token: &str,
) -> Result<OwnedDeviceId> {
    let probe = Client::builder()
        .homeserver_url(homeserver)
        .build()
        .await
        .with_context(|| format!("cannot use the homeserver URL {homeserver}"))?;
    let session = MatrixSession {
        meta: SessionMeta {
            user_id: user_id.clone(),
            // Unknown yet: `/whoami` only needs the token.
            device_id: OwnedDeviceId::from("RTCPROBE"),
        },
        tokens: SessionTokens {
            access_token: token.to_owned(),
            refresh_token: None,
        },
    };
    probe
        .matrix_auth()
        .restore_session(session, RoomLoadSettings::default())
        .await
        .context("restoring the session failed")?;
    let whoami = probe
        .whoami()
        .await
        .with_context(|| format!("{homeserver} refused the access token"))?;
    whoami.device_id.with_context(
        || "the server did not say which device the access token belongs to: pass --device-id",
    )
}

/// Fails when the server lacks one of `needed`, naming every missing one.
fn require(features: &ServerFeatures, needed: &[MissingFeature], homeserver: &str) -> Result<()> {
    let missing: Vec<String> = features
        .missing()
        .into_iter()
        .filter(|feature| needed.contains(feature))
        .map(|feature| feature.to_string())
        .collect();
    if !missing.is_empty() {
        bail!(
            "the homeserver at {homeserver} lacks {}; this command needs it",
            missing.join(" and ")
        );
    }
    Ok(())
}

/// One line naming our device and its store.
fn device_line(user_id: &OwnedUserId, device_id: &OwnedDeviceId, login: &LoginArgs) -> String {
    let store = match (&login.store, &login.store_passphrase) {
        (Some(path), Some(_)) => format!("store {} (encrypted)", path.display()),
        (Some(path), None) => format!("store {} (not encrypted)", path.display()),
        (None, _) => "store in memory: this device's keys live only as long as this process; \
                      do not use this device anywhere else"
            .to_owned(),
    };
    format!("device {device_id} of {user_id}, {store}")
}
