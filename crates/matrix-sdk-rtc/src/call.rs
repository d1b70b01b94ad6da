//! [`RtcCall`]: one call (a slot of a room): its participants, whether it is active, and our
//! own membership of it.
use std::sync::Arc;

use eyeball::Subscriber;
use eyeball_im::VectorDiff;
use futures_util::Stream;
use imbl::Vector;
use matrix_rtc_machine::{CallId, ContentUpdate, JoinParams};
use matrix_rtc_membership::{MembershipContent, OwnStatus, Participant, Transport};
use matrix_sdk::{RoomState, ruma::RoomId};
use tokio::sync::oneshot;

use crate::{
    Error, JoinOptions, LiveKitCredentials, LiveKitError, MissingFeature, Result, RtcClient,
    livekit,
    observe::{self, CallObservables},
    pump::Control,
};

/// One call: a slot (`m.call#ROOM` for the room call) of one room.
///
/// Get it from [`RtcClient::call`] or [`RtcClient::room_call`]. Every handle of the same call
/// shares the same observables, and they live as long as a handle (or a subscription) does.
#[derive(Debug, Clone)]
pub struct RtcCall {
    rtc: RtcClient,
    id: CallId,
    observables: Arc<CallObservables>,
}

impl RtcCall {
    pub(crate) fn new(rtc: RtcClient, id: CallId, observables: Arc<CallObservables>) -> Self {
        Self {
            rtc,
            id,
            observables,
        }
    }

    /// Which call this is.
    pub fn id(&self) -> &CallId {
        &self.id
    }

    /// The room.
    pub fn room_id(&self) -> &RoomId {
        self.id.room_id()
    }

    /// The slot (`{application}#{name}`).
    pub fn slot_id(&self) -> &str {
        self.id.slot_id()
    }

    /// The participants now, oldest first.
    pub fn participants(&self) -> Vector<Arc<Participant>> {
        self.view().participants()
    }

    /// The participants now (oldest first), and a stream of their changes from that moment
    /// on, one batch of diffs per step of the machine. The stream is `'static` and may be
    /// moved to another task; a reader more than 256 batches behind gets a
    /// `VectorDiff::Reset` with the whole list.
    pub fn subscribe_participants(
        &self,
    ) -> (
        Vector<Arc<Participant>>,
        impl Stream<Item = Vec<VectorDiff<Arc<Participant>>>> + use<>,
    ) {
        observe::subscribe_participants(&self.observables)
    }

    /// Whether the call has at least one participant.
    pub fn is_active(&self) -> bool {
        self.observables.active.get()
    }

    /// Whether the call has at least one participant, as it changes.
    pub fn subscribe_active(&self) -> Subscriber<bool> {
        self.observables.active.subscribe()
    }

    /// The read-only observables of this call.
    pub fn view(&self) -> RtcCallView {
        RtcCallView::new(self.observables.clone())
    }

    /// Our own membership's status.
    pub fn own_status(&self) -> OwnStatus {
        self.observables.own_status.get()
    }

    /// Our own membership's status, as it changes.
    pub fn subscribe_own_status(&self) -> Subscriber<OwnStatus> {
        self.observables.own_status.subscribe()
    }

    /// Joins the call: schedules our delayed leave (the dead-man switch), then sends our
    /// membership, and keeps both alive until [`leave`](Self::leave). Returns once we are
    /// connected (or the join failed).
    ///
    /// On a server without delayed events (or one that refuses ours) the join still works,
    /// with no dead-man switch: our membership then lives five minutes and is refreshed every
    /// two and a half (see `OwnMembershipConfig::no_switch_sticky_duration_ms`), the status says
    /// [`OwnStatus::Connected`] with `dead_man_switch: false`, and leaving sends the leave
    /// directly.
    ///
    /// In an encrypted room our membership (and our leaves) are encrypted, never sent in
    /// plaintext. Fails at once in an encrypted room when the client was not built by
    /// [`RtcClient::builder`] (see [`RtcClient::new`]), when the server lacks sticky events,
    /// or when no transport is given and the server advertises none.
    pub async fn join(&self, options: JoinOptions) -> Result<()> {
        let client = self.rtc.client();
        let (Some(user_id), Some(device_id)) = (client.user_id(), client.device_id()) else {
            return Err(Error::NotLoggedIn);
        };
        let room = client
            .get_room(self.id.room_id())
            .filter(|room| room.state() == RoomState::Joined)
            .ok_or_else(|| Error::UnknownRoom(self.id.room_id().to_owned()))?;
        // We encrypt our membership with the olm machine of a client we built; a client
        // built elsewhere cannot, and we never send plaintext into an encrypted room.
        if room.latest_encryption_state().await?.is_encrypted() && self.rtc.encryptor().is_none() {
            return Err(Error::EncryptedRoomNotSupported(
                self.id.room_id().to_owned(),
            ));
        }
        let features = self.rtc.features().await?;
        if !features.sticky_events {
            // Legacy state memberships are read, but we only send sticky ones.
            return Err(Error::MissingFeature(MissingFeature::StickyEvents));
        }
        let transport = match options.transport {
            Some(transport) => transport,
            None => self.advertised_transport().await?,
        };

        let member_id = uuid::Uuid::new_v4().to_string();
        let mut content = MembershipContent::room_call(
            user_id.to_owned(),
            device_id.to_owned(),
            member_id,
            transport,
        );
        content.slot_id = self.id.slot_id().to_owned();
        self.id.application().clone_into(&mut content.application);
        content.call_intent = options.call_intent;
        // Delayed events only where `/versions` advertises them and the capability does not
        // turn them off (`max_delay_ms: 0`): without them the join goes ahead with no
        // dead-man switch and a short sticky lifetime.
        let mut params = JoinParams::new(content, features.capabilities());
        if let Some(timings) = options.timings {
            params = params.with_timings(timings);
        }
        let (reply, done) = oneshot::channel();
        self.rtc
            .send_control(Control::Join {
                call: self.id.clone(),
                params: Box::new(params),
                reply,
            })
            .await?;
        done.await.map_err(|_| Error::DriverStopped)?
    }

    /// Changes our membership while we are joining or joined: publish on another transport,
    /// or announce another call intent. It goes out soon as a refresh of the same member; our
    /// delayed leave stays armed as it is.
    pub async fn update(&self, update: ContentUpdate) -> Result<()> {
        let (reply, done) = oneshot::channel();
        self.rtc
            .send_control(Control::Update {
                call: self.id.clone(),
                update,
                reply,
            })
            .await?;
        done.await.map_err(|_| Error::DriverStopped)?
    }

    /// Leaves the call: sends our scheduled delayed leave now (falling back to a plain
    /// leave), and returns once that is done. Leaving a call we are not in does nothing.
    pub async fn leave(&self) -> Result<()> {
        let (reply, done) = oneshot::channel();
        self.rtc
            .send_control(Control::Leave {
                call: self.id.clone(),
                reply,
            })
            .await?;
        done.await.map_err(|_| Error::DriverStopped)?
    }

    /// LiveKit credentials for our membership of this call: the SFU URL, a JWT for it and
    /// our LiveKit identity there (the one peers compute for our membership). Usable once we
    /// joined (while joining too: the identity derives only from our member ID).
    ///
    /// The token comes from the transport our membership publishes on: a JWT service
    /// (`/get_token` with a fresh OpenID token from the homeserver, falling back to the
    /// legacy `/sfu/get`), or, for a LiveKit transport with only an SFU `url`, the
    /// homeserver's MSC4195 endpoint. It is cached until shortly before it expires; a call
    /// after that fetches a new one. Nothing is retried: see
    /// [`LiveKitError::is_transient`](crate::LiveKitError::is_transient).
    pub async fn livekit_credentials(
        &self,
    ) -> std::result::Result<LiveKitCredentials, LiveKitError> {
        livekit::credentials(&self.rtc, &self.id).await
    }

    /// The transport to publish on, from the homeserver's list (see
    /// [`livekit::choose_transport`]).
    async fn advertised_transport(&self) -> Result<Transport> {
        let transports = livekit::advertised_transports(self.rtc.api()).await?;
        livekit::choose_transport(&transports).ok_or(Error::NoTransport)
    }
}

/// The observable state of one call, without the means to join it: its participants and
/// whether it is active. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RtcCallView {
    observables: Arc<CallObservables>,
}

impl RtcCallView {
    pub(crate) fn new(observables: Arc<CallObservables>) -> Self {
        Self { observables }
    }

    /// The participants now, oldest first.
    pub fn participants(&self) -> Vector<Arc<Participant>> {
        self.observables.participants().clone()
    }

    /// The participants now (oldest first), and a `'static` stream of their changes.
    pub fn subscribe_participants(
        &self,
    ) -> (
        Vector<Arc<Participant>>,
        impl Stream<Item = Vec<VectorDiff<Arc<Participant>>>> + use<>,
    ) {
        observe::subscribe_participants(&self.observables)
    }

    /// Whether the call has at least one participant.
    pub fn is_active(&self) -> bool {
        self.observables.active.get()
    }

    /// Whether the call has at least one participant, as it changes.
    pub fn subscribe_active(&self) -> Subscriber<bool> {
        self.observables.active.subscribe()
    }
}
