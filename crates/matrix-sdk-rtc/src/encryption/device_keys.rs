//! One device, one crypto store: before anything of ours is sent, the identity keys our crypto
//! store holds for this device are compared with the keys the server publishes for it.
//!
//! Two crypto stores on one device (an app and us restoring the same session with separate
//! stores, or an in-memory store started twice) each make their own identity keys for the same
//! device id; the server then publishes one set while the other store sends with the other,
//! and encryption for that device breaks for everyone, silently. A difference means another
//! store is using this device: we stop with [`Error::DeviceKeysDiffer`](crate::Error).

use std::collections::BTreeMap;

use matrix_sdk::{
    Client,
    ruma::{DeviceId, OwnedDeviceId, UserId, api::client::keys::get_keys},
};
use serde::Deserialize;
use tracing::debug;

use super::{Encryptor, request_config};
use crate::{Error, RequestError, requests::RequestContext, requests::map_http_error};

/// The part of a device's published keys we compare.
#[derive(Debug, Deserialize)]
struct PublishedKeys {
    #[serde(default)]
    keys: BTreeMap<String, String>,
}

impl Encryptor {
    /// Fails with [`Error::DeviceKeysDiffer`] when the server publishes identity keys for our
    /// device other than those of our crypto store. A device the server has no keys for yet
    /// (a fresh login) passes: ours will be the ones uploaded.
    pub(crate) async fn check_device_keys(
        &self,
        client: &Client,
        user_id: &UserId,
        device_id: &DeviceId,
    ) -> Result<(), Error> {
        let ours = {
            let machine = self.base.olm_machine().await;
            let Some(machine) = machine.as_ref() else {
                return Err(Error::NotLoggedIn);
            };
            machine.identity_keys()
        };
        let mut query = get_keys::v3::Request::new();
        query
            .device_keys
            .insert(user_id.to_owned(), vec![device_id.to_owned()]);
        let response = client
            .send(query)
            .with_request_config(request_config())
            .await
            .map_err(|error| Error::Request(map_http_error(&error, RequestContext::Plain)))?;
        let Some(published) = response
            .device_keys
            .get(user_id)
            .and_then(|devices| devices.get(device_id))
        else {
            debug!("the server has no keys for our device yet");
            return Ok(());
        };
        let published: PublishedKeys =
            serde_json::from_str(published.json().get()).map_err(|_| {
                Error::Request(RequestError::InvalidResponse(
                    "unreadable device keys".to_owned(),
                ))
            })?;
        let ed25519 = published.keys.get(&format!("ed25519:{device_id}"));
        let curve25519 = published.keys.get(&format!("curve25519:{device_id}"));
        let same = ed25519 == Some(&ours.ed25519.to_base64())
            && curve25519.is_none_or(|key| *key == ours.curve25519.to_base64());
        if same {
            Ok(())
        } else {
            Err(Error::DeviceKeysDiffer {
                device_id: OwnedDeviceId::from(device_id),
            })
        }
    }
}
