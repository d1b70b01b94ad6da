//! Our own calls, kept in the client's state store across restarts: the record the machine
//! publishes ([`OwnCallRecords`]: the member ID and the pending delayed leave of every call we
//! are in). This module only stores and loads it. After a restart (or a crash) the old
//! membership is then ended at once, instead of lingering until its delayed leave fires, and
//! the app can offer to resume the call.
//!
//! The state store keeps custom values unencrypted even when it has a passphrase, and a delay
//! ID is a bearer secret (anyone holding it can send or cancel our leave). With a passphrase,
//! the value is encrypted with a [`StoreCipher`] whose key is itself stored encrypted with the
//! passphrase. Without one, nothing is persisted unless the app opted in to plaintext
//! ([`RtcConfig::persist_calls_unencrypted`](crate::RtcConfig::persist_calls_unencrypted)).
use matrix_rtc_machine::OwnCallRecords;
use matrix_sdk::Client;
use matrix_sdk_store_encryption::StoreCipher;
use tracing::{info, warn};

/// Where our calls are kept.
const CALLS_KEY: &[u8] = b"matrix-sdk-rtc/own-calls/v1";
/// Where the cipher for [`CALLS_KEY`] is kept (encrypted with the store passphrase).
const CIPHER_KEY: &[u8] = b"matrix-sdk-rtc/own-calls-cipher/v1";

/// How persisted calls are protected.
#[derive(Clone)]
enum Protection {
    /// No passphrase, and the app opted in to plaintext persistence.
    Plain,
    /// Encrypted with this cipher.
    Encrypted(std::sync::Arc<StoreCipher>),
    /// Nothing is persisted: no passphrase and no opt-in to plaintext, or a passphrase was
    /// given but no cipher could be had (never write a secret in clear).
    Disabled,
}

impl std::fmt::Debug for Protection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.write_str(match self {
            Self::Plain => "Plain",
            Self::Encrypted(_) => "Encrypted",
            Self::Disabled => "Disabled",
        })
    }
}

/// Reads and writes [`OwnCallRecords`] in the client's state store.
#[derive(Debug, Clone)]
pub(crate) struct CallStore {
    client: Client,
    protection: Protection,
}

impl CallStore {
    /// Opens the store; with a passphrase, loads (or creates) the cipher that protects it.
    /// Without one, plaintext is used only when `plaintext_allowed`.
    pub(crate) async fn open(
        client: Client,
        passphrase: Option<&str>,
        plaintext_allowed: bool,
    ) -> Self {
        let protection = match passphrase {
            None if plaintext_allowed => Protection::Plain,
            None => {
                info!(
                    "no store passphrase: our calls are not persisted (a crash leaves our \
                     membership until its delayed leave fires)"
                );
                Protection::Disabled
            }
            Some(passphrase) => match load_cipher(&client, passphrase).await {
                Some(cipher) => Protection::Encrypted(std::sync::Arc::new(cipher)),
                None => Protection::Disabled,
            },
        };
        Self { client, protection }
    }

    /// What was persisted; nothing (with a logged reason) when it cannot be read.
    pub(crate) async fn load(&self) -> OwnCallRecords {
        if matches!(self.protection, Protection::Disabled) {
            return OwnCallRecords::default();
        }
        let bytes = match self.client.state_store().get_custom_value(CALLS_KEY).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return OwnCallRecords::default(),
            Err(error) => {
                warn!(%error, "could not read our persisted calls");
                return OwnCallRecords::default();
            }
        };
        let decoded = match &self.protection {
            Protection::Encrypted(cipher) => cipher
                .decrypt_value::<OwnCallRecords>(&bytes)
                .map_err(|e| e.to_string()),
            Protection::Plain | Protection::Disabled => {
                serde_json::from_slice::<OwnCallRecords>(&bytes).map_err(|e| e.to_string())
            }
        };
        decoded.unwrap_or_else(|error| {
            warn!(%error, "persisted calls unreadable (another passphrase?); ignoring them");
            OwnCallRecords::default()
        })
    }

    /// Replaces what is persisted.
    pub(crate) async fn save(&self, calls: &OwnCallRecords) {
        if matches!(self.protection, Protection::Disabled) {
            return;
        }
        let store = self.client.state_store();
        let result = if calls.is_empty() {
            store.remove_custom_value(CALLS_KEY).await.map(drop)
        } else {
            let bytes = match &self.protection {
                Protection::Encrypted(cipher) => {
                    cipher.encrypt_value(calls).map_err(|e| e.to_string())
                }
                Protection::Plain | Protection::Disabled => {
                    serde_json::to_vec(calls).map_err(|e| e.to_string())
                }
            };
            match bytes {
                Ok(bytes) => store.set_custom_value(CALLS_KEY, bytes).await.map(drop),
                Err(error) => {
                    warn!(%error, "could not encode our calls");
                    return;
                }
            }
        };
        if let Err(error) = result {
            warn!(%error, "could not persist our calls");
        }
    }
}

async fn load_cipher(client: &Client, passphrase: &str) -> Option<StoreCipher> {
    let store = client.state_store();
    match store.get_custom_value(CIPHER_KEY).await {
        Ok(Some(exported)) => match StoreCipher::import(passphrase, &exported) {
            Ok(cipher) => return Some(cipher),
            Err(error) => {
                warn!(%error, "our store cipher does not open with this passphrase; making a new one")
            }
        },
        Ok(None) => {}
        Err(error) => {
            warn!(%error, "could not read our store cipher; not persisting calls");
            return None;
        }
    }
    let cipher = StoreCipher::new().ok()?;
    let exported = cipher.export(passphrase).ok()?;
    if let Err(error) = store.set_custom_value(CIPHER_KEY, exported).await {
        warn!(%error, "could not store our store cipher; not persisting calls");
        return None;
    }
    Some(cipher)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use matrix_rtc_machine::{OwnCallRecord, OwnCallRecords};
    use matrix_sdk::{Client, ruma::owned_room_id};

    use super::{CALLS_KEY, CallStore};

    const DELAY_ID: &str = "syd_aSecretThatMustNotLeak";

    fn records() -> OwnCallRecords {
        let mut calls = OwnCallRecords::default();
        calls.insert(OwnCallRecord::new(
            owned_room_id!("!room:example.org"),
            "m.call#ROOM",
            "member-1",
            Some(DELAY_ID.to_owned()),
            3_600_000,
        ));
        calls
    }

    /// A client on SQLite stores under a fresh folder (no server is contacted).
    async fn client(passphrase: Option<&str>) -> (Client, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "rtc-persist-{}-{}",
            std::process::id(),
            matrix_sdk::ruma::TransactionId::new()
        ));
        let base = crate::encryption::base_client(Some((&dir, passphrase)), &Default::default())
            .await
            .expect("stores open");
        let client = Client::builder()
            .homeserver_url("http://127.0.0.1:9")
            .base_client(base)
            .build()
            .await
            .expect("client builds");
        (client, dir)
    }

    /// Whether any file under `dir` holds `needle`.
    fn any_file_contains(dir: &Path, needle: &[u8]) -> bool {
        std::fs::read_dir(dir).expect("store folder").any(|entry| {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                return any_file_contains(&path, needle);
            }
            let bytes = std::fs::read(&path).unwrap_or_default();
            bytes.windows(needle.len()).any(|window| window == needle)
        })
    }

    #[tokio::test]
    async fn with_a_passphrase_the_record_is_encrypted_on_disk() {
        let (client, dir) = client(Some("correct horse battery staple")).await;
        let store =
            CallStore::open(client.clone(), Some("correct horse battery staple"), false).await;
        store.save(&records()).await;
        assert!(
            client
                .state_store()
                .get_custom_value(CALLS_KEY)
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(store.load().await, records());
        drop((store, client));
        assert!(!any_file_contains(&dir, DELAY_ID.as_bytes()));
        assert!(!any_file_contains(&dir, b"member-1"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn without_a_passphrase_nothing_is_persisted_unless_plaintext_was_chosen() {
        let (client, dir) = client(None).await;
        let store = CallStore::open(client.clone(), None, false).await;
        store.save(&records()).await;
        let stored = client
            .state_store()
            .get_custom_value(CALLS_KEY)
            .await
            .unwrap();
        assert_eq!(stored, None);
        assert!(store.load().await.is_empty());
        assert!(!any_file_contains(&dir, DELAY_ID.as_bytes()));

        // The explicit opt-in: in clear, and read back.
        let plain = CallStore::open(client.clone(), None, true).await;
        plain.save(&records()).await;
        assert_eq!(plain.load().await, records());
        drop((store, plain, client));
        assert!(any_file_contains(&dir, DELAY_ID.as_bytes()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
