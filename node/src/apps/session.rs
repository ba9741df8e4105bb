//! One call in an auto attendant: the menu ([`super::ivr`]) driven by the call's media (keys in,
//! clips out) and by what the agent reports (SIP INFO keys, the transfer's outcome, the hang-up).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use storage::ivr::Ivr;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::ivr::{Clip, Menu, MenuConfig, Numbers, Step};
use super::media::{Agreed, CallMedia, Heard};
use super::{AppCommand, Context, SessionEvent};

/// Nobody stays in a menu longer than this; the call is hung up.
const MAX_SESSION: Duration = Duration::from_secs(15 * 60);

/// Extensions as the replica has them, for direct dialling.
struct Replica<'a>(&'a storage::StateReader);

impl Numbers for Replica<'_> {
    fn is_extension(&self, number: &str) -> bool {
        self.0
            .get::<storage::model::Extension>(number)
            .ok()
            .flatten()
            .is_some_and(|e| e.enabled)
    }
    fn extends(&self, prefix: &str) -> bool {
        self.0
            .scan_prefix::<storage::model::Extension>(prefix)
            .is_ok_and(|all| all.iter().any(|e| e.number.len() > prefix.len()))
    }
}

/// What one session needs to run.
pub(super) struct Session {
    pub(super) call: String,
    pub(super) ivr: Ivr,
    pub(super) menu: MenuConfig,
    pub(super) agreed: Agreed,
    pub(super) sock: UdpSocket,
    /// The relay's socket facing us, from the offer.
    pub(super) peer: Option<SocketAddr>,
}

impl Session {
    pub(super) async fn run(
        self,
        ctx: Arc<Context>,
        mut events: mpsc::Receiver<SessionEvent>,
        commands: mpsc::Sender<(String, AppCommand)>,
    ) {
        let Self {
            call,
            ivr,
            menu,
            agreed,
            sock,
            peer,
        } = self;
        let greeting = ctx.greeting(ivr.greeting.as_deref()).await;
        let clip_of = async |c: Clip| match c {
            Clip::Greeting => Arc::clone(&greeting),
            // Spoken ("That choice is not valid."), or the three rising tones.
            Clip::Invalid => {
                ctx.prompts
                    .clip(&super::prompts::Prompt::InvalidChoice)
                    .await
            }
        };
        let mut media = CallMedia::new(&agreed, Arc::new(sock), peer);
        let (mut menu, first) = Menu::start(menu);
        tracing::info!(call = %call, ivr = %ivr.number, name = %ivr.name, "auto attendant answered");
        metrics::counter!("pbx_ivr_calls_total").increment(1);
        let mut pending = vec![first];
        let mut give_up = Instant::now() + MAX_SESSION;
        let reader = ctx.cluster.reader().clone();
        let numbers = Replica(&reader);
        let mut hung_up = false;
        loop {
            for step in pending.drain(..) {
                match step {
                    Step::Play(c) => media.playout.play(clip_of(c).await),
                    Step::Silence => media.playout.stop(),
                    Step::Transfer(to) => {
                        media.playout.stop();
                        tracing::info!(call = %call, ivr = %ivr.number, to = %to, "auto attendant: handing the call on");
                        let _ = commands.send((call.clone(), AppCommand::Refer(to))).await;
                    }
                    Step::Hangup => {
                        media.playout.stop();
                        hung_up = true;
                        let _ = commands.send((call.clone(), AppCommand::Hangup)).await;
                    }
                }
            }
            let deadline = menu
                .deadline()
                .map_or(give_up, |d| Instant::from_std(d).min(give_up));
            let now_std = std::time::Instant::now;
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(SessionEvent::Key(k)) => pending.extend(menu.digit(k, now_std(), &numbers)),
                    Some(SessionEvent::Transferred(code)) if code >= 300 => {
                        tracing::info!(call = %call, code, "auto attendant: the choice did not answer; back to the menu");
                        pending.push(menu.transfer_failed());
                    }
                    Some(SessionEvent::Transferred(_)) => {}
                    Some(SessionEvent::Ended) | None => return,
                },
                heard = media.next() => match heard {
                    Heard::Tick { ended: true } => pending.extend(menu.played(now_std())),
                    Heard::Tick { ended: false } => {}
                    Heard::Packet { keys } => {
                        for k in keys {
                            pending.extend(menu.digit(k, now_std(), &numbers));
                        }
                    }
                },
                () = tokio::time::sleep_until(deadline) => {
                    if Instant::now() >= give_up && !hung_up {
                        tracing::warn!(call = %call, "auto attendant: caller in the menu too long; hanging up");
                        hung_up = true;
                        let _ = commands.send((call.clone(), AppCommand::Hangup)).await;
                    }
                    if hung_up {
                        // The agent ends the dialog; until it reports so, nothing is due here.
                        give_up = Instant::now() + MAX_SESSION;
                    }
                    pending.extend(menu.tick(now_std(), &numbers));
                }
            }
        }
    }
}
