//! Our own calls, kept in the client's state store across restarts: the record the machine
//! publishes ([`OwnCallRecords`]: the member ID and the pending delayed leave of every call we
//! are in). This module only stores and loads it. After a restart (or a crash) the old
//! membership is then ended at once, instead of lingering until its delayed leave fires, and
//! the app can offer to resume the call.
//!
//! The state store keeps custom values unencrypted even when it has a passphrase, and a delay
//! ID is a bearer secret (anyone holding it can send or cancel our leave). With a passphrase,
//! the value is encrypted with a [`StoreCipher`] whose key is itself stored encrypted with the
//! passphrase. Without one, every store of the client is plaintext anyway, and so is this.
use matrix_rtc_machine::OwnCallRecords;
use matrix_sdk::Client;
use matrix_sdk_store_encryption::StoreCipher;
use tracing::warn;

/// Where our calls are kept.
const CALLS_KEY: &[u8] = b"matrix-sdk-rtc/own-calls/v1";
/// Where the cipher for [`CALLS_KEY`] is kept (encrypted with the store passphrase).
const CIPHER_KEY: &[u8] = b"matrix-sdk-rtc/own-calls-cipher/v1";

/// How persisted calls are protected.
#[derive(Clone)]
enum Protection {
    /// No passphrase: the client's stores are plaintext, and so is this.
    Plain,
    /// Encrypted with this cipher.
    Encrypted(std::sync::Arc<StoreCipher>),
    /// A passphrase was given but no cipher could be had: persist nothing rather than write
    /// a secret in clear.
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
    pub(crate) async fn open(client: Client, passphrase: Option<&str>) -> Self {
        let protection = match passphrase {
            None => Protection::Plain,
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
