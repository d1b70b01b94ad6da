//! `rtc join` and `rtc leave`: our own membership of a call.
use std::{sync::Arc, time::Duration};

use anyhow::{Context as _, Result, bail};
use futures_util::StreamExt as _;
use matrix_rtc_membership::{sticky_leave_content, wire};
use matrix_sdk::{Client, ruma::RoomId};
use matrix_sdk_rtc::{
    CallId, JoinOptions, MissingFeature, OwnMembershipConfig, OwnStatus, Participant, RtcCall,
    SideSyncStatus, Transport,
};

use crate::{
    cli::{JoinArgs, LeaveArgs},
    connect::Connected,
    requests, signal,
};

/// How long `rtc leave` waits for the side connection's first answer.
const FIRST_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `rtc leave` waits, after that answer, for this device's membership to show.
const SETTLE: Duration = Duration::from_secs(3);
/// How long `rtc leave` waits for its leave to come back through sync.
const LEAVE_SEEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Sticky duration of the leave `rtc leave` sends (what js-sdk and our driver use).
const LEAVE_STICKY: Duration = Duration::from_secs(3_600);

/// `rtc join`: join, print our status as it changes, leave on Ctrl-C.
pub(crate) async fn join(args: JoinArgs) -> Result<()> {
    // Delayed events are not needed: without them the join goes ahead with no dead-man switch
    // (a short sticky lifetime instead), and the status line says so.
    let needed = [MissingFeature::StickyEvents];
    let mut connected = Connected::login(&args.login, &needed).await?;
    let delayed_events = connected.rtc.features().await?.delayed_events;
    let room_id = connected.joined_room(&args.room).await?;
    connected.start().await?;
    let call = connected.rtc.call(&CallId::new(&room_id, &args.slot)?);

    let timings = OwnMembershipConfig {
        delay_ms: args.delay_ms,
        sticky_duration_ms: args.sticky_ms,
        ..OwnMembershipConfig::default()
    };
    let mut options = JoinOptions::default().with_timings(timings);
    if let Some(url) = &args.livekit_url {
        options = options.with_transport(Transport::livekit(url.clone()));
    }

    let mut status = call.subscribe_own_status();
    let printer = tokio::spawn(async move {
        while let Some(status) = status.next().await {
            println!("status: {}", status_text(&status));
        }
    });
    if delayed_events {
        println!(
            "joining {} in {room_id} as {} ({}), delayed leave after {} ms",
            args.slot, connected.user_id, connected.device_id, args.delay_ms
        );
    } else {
        println!(
            "joining {} in {room_id} as {} ({}), without a delayed leave: the server has no delayed events",
            args.slot, connected.user_id, connected.device_id
        );
    }

    let joined = tokio::select! {
        joined = call.join(options) => Some(joined),
        interrupted = signal::interrupted() => { interrupted?; None }
    };
    match joined {
        Some(Ok(())) => {
            println!("joined; Ctrl-C leaves the call");
            if args.print_credentials {
                print_credentials(&call).await;
            }
            let me = (connected.user_id.clone(), connected.device_id.clone());
            let shown = show_own_member(&call, me);
            tokio::select! {
                () = shown => signal::interrupted().await?,
                interrupted = signal::interrupted() => interrupted?,
            }
        }
        Some(Err(error)) => {
            printer.abort();
            return Err(error).context("joining the call failed");
        }
        None => println!("interrupted while joining"),
    }

    println!("leaving");
    let left = tokio::time::timeout(Duration::from_secs(30), call.leave()).await;
    printer.abort();
    match left {
        Ok(Ok(())) => println!("left"),
        Ok(Err(error)) => return Err(error).context("leaving the call failed"),
        Err(_) => bail!("leaving the call took more than 30 s; the delayed leave will end it"),
    }
    connected.shutdown();
    Ok(())
}

/// Prints LiveKit credentials for our membership (`--print-credentials`), or why there are
/// none: the membership stays either way.
async fn print_credentials(call: &RtcCall) {
    match call.livekit_credentials().await {
        Ok(credentials) => {
            println!("livekit sfu: {}", credentials.sfu_url);
            println!("livekit identity: {}", credentials.identity);
            println!("livekit room: {}", credentials.room);
            println!(
                "livekit expires: {} (ms since the epoch; from {})",
                credentials.expires_at_ms, credentials.endpoint
            );
            if !credentials.identity_matches_membership {
                println!("livekit warning: peers expect another identity for our membership");
            }
            println!("livekit jwt: {}", credentials.jwt);
        }
        Err(error) => eprintln!("livekit credentials failed: {error}"),
    }
}

/// Prints our own participant entry once sync shows it.
async fn show_own_member(
    call: &RtcCall,
    (user_id, device_id): (
        matrix_sdk::ruma::OwnedUserId,
        matrix_sdk::ruma::OwnedDeviceId,
    ),
) {
    let (mut participants, mut diffs) = call.subscribe_participants();
    loop {
        if let Some(own) = participants
            .iter()
            .find(|p| p.user_id == user_id && p.device_id == device_id)
        {
            println!("visible in the call as member {}", own.member_id);
            return;
        }
        let Some(batch) = diffs.next().await else {
            return;
        };
        for diff in batch {
            diff.apply(&mut participants);
        }
    }
}

/// `rtc leave`: ends this device's membership of the call without joining.
///
/// Reads the call's participants for our user and device. For each membership found, fires
/// our pending delayed leave for that member ID when the server still holds one (which also
/// disarms the dead-man switch), or else sends a sticky leave for the member ID. Then waits
/// until sync shows the membership gone.
pub(crate) async fn leave(args: LeaveArgs) -> Result<()> {
    let needed = [MissingFeature::StickyEvents, MissingFeature::SlidingSync];
    let mut connected = Connected::login(&args.login, &needed).await?;
    let room_id = connected.joined_room(&args.room).await?;
    let mut side_sync = connected.rtc.subscribe_side_sync_status();
    connected.start().await?;
    let call = connected.rtc.call(&CallId::new(&room_id, &args.slot)?);

    // The side connection's first answer carries every live membership.
    let first_answer = tokio::time::timeout(FIRST_ANSWER_TIMEOUT, async {
        loop {
            match side_sync.get() {
                SideSyncStatus::Running => return Ok(()),
                SideSyncStatus::Failed { error } => return Err(error),
                _ => {}
            }
            if side_sync.next().await.is_none() {
                return Ok(());
            }
        }
    })
    .await;
    match first_answer {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(error).context("the sticky-events connection failed"),
        Err(_) => bail!("no answer from the sticky-events connection within 30 s"),
    }
    let is_own =
        |p: &Participant| p.user_id == connected.user_id && p.device_id == connected.device_id;
    let own = wait_for(&call, SETTLE, |participants| {
        participants.iter().any(|p| is_own(p))
    })
    .await;
    let own: Vec<Arc<Participant>> = own.into_iter().filter(|p| is_own(p)).collect();
    if own.is_empty() {
        println!(
            "{} ({}) has no membership in {} of {room_id}: nothing to leave",
            connected.user_id, connected.device_id, args.slot
        );
        connected.shutdown();
        return Ok(());
    }

    let client = connected.rtc.client().clone();
    let encrypted = match connected.rtc.client().get_room(&room_id) {
        Some(room) => room
            .latest_encryption_state()
            .await
            .context("reading the room's encryption state")?
            .is_encrypted(),
        None => false,
    };
    for participant in &own {
        end_membership(&client, &room_id, &args.slot, participant, encrypted).await?;
    }

    let gone = wait_for(&call, LEAVE_SEEN_TIMEOUT, |participants| {
        !participants
            .iter()
            .any(|p| own.iter().any(|o| o.member_id == p.member_id))
    })
    .await;
    if gone
        .iter()
        .any(|p| own.iter().any(|o| o.member_id == p.member_id))
    {
        bail!("the leave was sent, but sync still shows the membership after 30 s");
    }
    println!("left: the call no longer shows this device");
    connected.shutdown();
    Ok(())
}

/// Fires our pending delayed leave for `participant`'s member ID, or sends a leave for it.
async fn end_membership(
    client: &Client,
    room_id: &RoomId,
    slot_id: &str,
    participant: &Participant,
    encrypted: bool,
) -> Result<()> {
    let member_id = &participant.member_id;
    let scheduled = requests::delayed_events(client)
        .await
        .context("listing our scheduled delayed events")?;
    let pending = scheduled.iter().find(|delayed| {
        delayed.room_id == *room_id
            && (delayed.event_type == wire::RTC_MEMBER_UNSTABLE
                || delayed.event_type == wire::RTC_MEMBER)
            && sticky_key(&delayed.content).as_deref() == Some(member_id)
    });
    if let Some(pending) = pending {
        match requests::fire_delayed_event(client, &pending.delay_id).await {
            Ok(()) => {
                println!("member {member_id}: fired our pending delayed leave");
                return Ok(());
            }
            Err(error) => println!(
                "member {member_id}: firing the delayed leave failed ({error:#}); sending a leave"
            ),
        }
    }
    if encrypted {
        bail!(
            "member {member_id} has no pending delayed leave, and this client cannot encrypt a \
             leave for the encrypted room {room_id} (it never sends one in plaintext there)"
        );
    }
    let content = sticky_leave_content(slot_id, member_id);
    let event_id = requests::send_sticky(
        client,
        room_id,
        wire::RTC_MEMBER_UNSTABLE,
        &content,
        LEAVE_STICKY,
    )
    .await
    .with_context(|| format!("sending the leave for member {member_id} failed"))?;
    println!("member {member_id}: sent leave {event_id}");
    Ok(())
}

/// The sticky key of member content (either name).
fn sticky_key(content: &serde_json::Value) -> Option<String> {
    [wire::STICKY_KEY_UNSTABLE, wire::STICKY_KEY]
        .iter()
        .find_map(|key| content.get(*key)?.as_str().map(ToOwned::to_owned))
}

/// The call's participants once `done` holds for them, or when `timeout` has passed.
async fn wait_for(
    call: &RtcCall,
    timeout: Duration,
    done: impl Fn(&imbl::Vector<Arc<Participant>>) -> bool,
) -> Vec<Arc<Participant>> {
    let (mut participants, mut diffs) = call.subscribe_participants();
    let _ = tokio::time::timeout(timeout, async {
        while !done(&participants) {
            let Some(batch) = diffs.next().await else {
                return;
            };
            for diff in batch {
                diff.apply(&mut participants);
            }
        }
    })
    .await;
    participants.into_iter().collect()
}

/// One line describing our status.
fn status_text(status: &OwnStatus) -> String {
    match status {
        OwnStatus::Disconnected => "disconnected".to_owned(),
        OwnStatus::Connecting => "connecting".to_owned(),
        OwnStatus::Connected {
            dead_man_switch: true,
        } => "connected (dead-man switch armed)".to_owned(),
        OwnStatus::Connected {
            dead_man_switch: false,
        } => "connected (no dead-man switch: a crash leaves a ghost until our join expires)"
            .to_owned(),
        OwnStatus::Disconnecting => "disconnecting".to_owned(),
        OwnStatus::ProbablyLeft => {
            "probably left (no heartbeat confirmed before our delayed leave could fire)".to_owned()
        }
        OwnStatus::Error { error, retrying } => {
            if *retrying {
                format!("error, still retrying: {error}")
            } else {
                format!("error: {error}")
            }
        }
        other => format!("{other:?}"),
    }
}
