//! Voicemail in the portal: the user's own mailbox on `/me` (the messages with a player, mark heard
//! or new, delete; the settings, the PIN and the greetings), and an extension's mailbox on the
//! admin's `/extensions` page (enable, ring time, limits, e-mail, PIN, greetings; create and
//! delete).
//!
//! Every change is a `PUT` of the whole mailbox (`/api/v1/extensions/{n}/voicemail`), so a form
//! that edits some fields carries the others, as they were read, in hidden fields; the PIN is
//! sent only when one is typed (an omitted PIN is kept). A greeting is uploaded to the audio store
//! (`POST /api/v1/audio?kind=greeting&owner={n}`), then the mailbox is pointed at it. The name
//! greeting (`greeting_name`: the owner saying their name, which the default greeting plays in
//! place of the number) is never carried: an omitted one is kept, so no form wipes it; it is set
//! by the upload and removed by its own button (`null`).

use axum::extract::{Path, State};
use maud::{Markup, html};
use serde_json::{Map, Value, json};
use storage::audio::MAX_AUDIO_NAME;
use storage::voicemail::{
    LeftBecause, MAILBOX_MESSAGE_SECS, MAILBOX_MESSAGES, MAILBOX_RING_SECS, Mailbox,
};

use super::layout::{badge, duration, empty_row, field, form_error, when};
use super::{Problem, api, enc};
use crate::api::{AppState, MailboxView, MessageList, Principal};

/// The settings of a mailbox, as the fields of a `PUT` body (unset ones left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Settings {
    pub extension: String,
    pub enabled: bool,
    pub email: Option<String>,
    pub ring_secs: u16,
    pub greeting_unavailable: Option<String>,
    pub greeting_busy: Option<String>,
    /// Shown, never sent back (see the module's notes).
    pub greeting_name: Option<String>,
    pub max_message_secs: u16,
    pub max_messages: u16,
}

impl Settings {
    fn of_view(m: &MailboxView) -> Self {
        Self {
            extension: m.extension.clone(),
            enabled: m.enabled,
            email: m.email.clone(),
            ring_secs: m.ring_secs,
            greeting_unavailable: m.greeting_unavailable.clone(),
            greeting_busy: m.greeting_busy.clone(),
            greeting_name: m.greeting_name.clone(),
            max_message_secs: m.max_message_secs,
            max_messages: m.max_messages,
        }
    }

    fn of_mailbox(m: &Mailbox, name: Option<&str>) -> Self {
        Self {
            extension: m.extension.clone(),
            enabled: m.enabled,
            email: m.email.clone(),
            ring_secs: m.ring_secs,
            greeting_unavailable: m.greeting_unavailable.clone(),
            greeting_busy: m.greeting_busy.clone(),
            greeting_name: name.map(str::to_owned),
            max_message_secs: m.max_message_secs,
            max_messages: m.max_messages,
        }
    }

    fn url(&self) -> String {
        format!("/api/v1/extensions/{}/voicemail", enc(&self.extension))
    }

    /// The `PUT` body that keeps everything as it is (the PIN and the name greeting too: they are
    /// left out, which keeps them).
    fn body(&self) -> Map<String, Value> {
        let mut body = Map::new();
        body.insert("enabled".into(), json!(self.enabled));
        body.insert("ring_secs".into(), json!(self.ring_secs));
        body.insert("max_message_secs".into(), json!(self.max_message_secs));
        body.insert("max_messages".into(), json!(self.max_messages));
        for (name, v) in [
            ("email", &self.email),
            ("greeting_unavailable", &self.greeting_unavailable),
            ("greeting_busy", &self.greeting_busy),
        ] {
            if let Some(v) = v {
                body.insert(name.into(), json!(v));
            }
        }
        body
    }

    /// [`Settings::body`] with `name` changed to `value` (`null` unsets it), as JSON text.
    fn body_with(&self, name: &str, value: Value) -> String {
        let mut body = self.body();
        body.insert(name.into(), value);
        Value::Object(body).to_string()
    }

    /// Hidden fields that carry every setting but those in `except` through a form.
    fn kept(&self, except: &[&str]) -> Markup {
        let keep = |name: &str| !except.contains(&name);
        html! {
            @if keep("enabled") {
                input type="hidden" name="enabled" data-type="bool" value=(self.enabled);
            }
            @for (name, v) in [
                ("ring_secs", self.ring_secs),
                ("max_message_secs", self.max_message_secs),
                ("max_messages", self.max_messages),
            ] {
                @if keep(name) { input type="hidden" name=(name) data-type="number" value=(v); }
            }
            @for (name, v) in [
                ("email", &self.email),
                ("greeting_unavailable", &self.greeting_unavailable),
                ("greeting_busy", &self.greeting_busy),
            ] {
                @if let Some(v) = v.as_deref().filter(|_| keep(name)) {
                    input type="hidden" name=(name) value=(v);
                }
            }
        }
    }
}

/// The account's own mailbox and its messages; `None` when the extension has none.
pub(super) type Mine = Result<Option<(MailboxView, MessageList)>, Problem>;

/// Reads extension `number`'s mailbox and messages through the API, as `who`.
pub(super) async fn load_mine(state: &AppState, who: &Principal, number: &str) -> Mine {
    let mailbox = api::answer::<MailboxView>(
        crate::api::mailbox(State(state.clone()), who.clone(), Path(number.to_owned())).await,
    )
    .await;
    let mailbox = match mailbox {
        Ok(m) => m,
        Err(p) if p.code == "not_found" => return Ok(None),
        Err(p) => return Err(p),
    };
    let messages = api::answer::<MessageList>(
        crate::api::voicemail_messages(State(state.clone()), who.clone(), Path(number.to_owned()))
            .await,
    )
    .await?;
    Ok(Some((mailbox, messages)))
}

fn because_label(b: LeftBecause) -> &'static str {
    match b {
        LeftBecause::NoAnswer => "not answered",
        LeftBecause::Busy => "busy",
        LeftBecause::Unavailable => "no phone",
    }
}

/// `#me-voicemail`: the user's messages, settings, PIN and greetings.
pub(super) fn mine_card(number: &str, mine: &Mine) -> Markup {
    html! {
        div.card #me-voicemail {
            @match mine {
                Err(p) => {
                    h2 { "Voicemail" }
                    p.banner.banner-bad #voicemail-error { (p.message) }
                }
                Ok(None) => {
                    h2 { "Voicemail" }
                    p.muted #voicemail-none {
                        "Extension " (number) " has no voicemail box. Your administrator can set one up."
                    }
                }
                Ok(Some((m, list))) => { (mailbox_section(m, list)) }
            }
        }
    }
}

fn mailbox_section(m: &MailboxView, list: &MessageList) -> Markup {
    let s = Settings::of_view(m);
    html! {
        h2 {
            "Voicemail "
            span.badge.badge-muted #voicemail-count { (list.total) }
            @if list.new > 0 { " " span.badge.badge-info #voicemail-new { (list.new) " new" } }
        }
        @if !m.enabled {
            p.banner.banner-warn #voicemail-off { "Voicemail is off: callers cannot leave messages." }
        }
        (messages_table(&s, list))
        div.grid-2 {
            div {
                h3 { "Settings" }
                (my_settings_form(&s))
            }
            div {
                h3 { "PIN" }
                p #voicemail-has-pin {
                    @if m.has_pin { (badge("ok", "set")) } @else { (badge("warn", "not set")) }
                    " The PIN lets you hear your messages from a phone."
                }
                (pin_form(&s))
            }
        }
        h3 { "Greetings" }
        (greetings(&s, true))
        (greeting_upload(&s, true))
    }
}

/// `#voicemail-table`: the messages, newest first, each with its player and actions.
pub(super) fn messages_table(s: &Settings, list: &MessageList) -> Markup {
    let base = format!("{}/messages", s.url());
    html! {
        div.table-wrap {
            table.data #voicemail-table {
                thead { tr {
                    th { "From" } th { "Received" } th { "Why" } th.num { "Length" } th { "Status" }
                    th { "Listen" } th.actions { "Actions" }
                } }
                tbody {
                    @for v in &list.messages {
                        @let url = format!("{base}/{}", enc(&v.audio_id));
                        @let content = format!("/api/v1/audio/{}/content", enc(&v.audio_id));
                        tr id={ "voicemail-row-" (v.audio_id) } data-message=(v.audio_id) {
                            td {
                                @if !v.caller_name.is_empty() { (v.caller_name) " " }
                                span.mono { (v.caller) }
                            }
                            td { (when(v.received_at)) }
                            td { (because_label(v.because)) }
                            td.num { (duration(u64::from(v.duration_ms).div_ceil(1000))) }
                            td {
                                @if v.heard { (badge("muted", "heard")) } @else { (badge("info", "new")) }
                            }
                            td {
                                audio.player controls preload="none" src=(content) {
                                    a href=(content) { "Download" }
                                }
                            }
                            td.actions {
                                @if v.heard {
                                    button.btn.btn-small.voicemail-mark type="button"
                                        data-api={ "PUT " (url) } data-body=(json!({"heard": false}).to_string())
                                        data-then="reload" { "Mark new" }
                                } @else {
                                    button.btn.btn-small.voicemail-mark type="button"
                                        data-api={ "PUT " (url) } data-body=(json!({"heard": true}).to_string())
                                        data-then="reload" { "Mark heard" }
                                }
                                a.btn.btn-small.voicemail-download href=(content) download { "Download" }
                                button.btn.btn-small.btn-danger.voicemail-delete type="button"
                                    data-api={ "DELETE " (url) }
                                    data-confirm={ "Delete the message from " (v.caller) "?" }
                                    data-then="reload" { "Delete" }
                            }
                        }
                    }
                    @if list.messages.is_empty() { (empty_row(7, "No messages.")) }
                }
            }
        }
    }
}

fn ring_field(s: &Settings, id: &str) -> Markup {
    field(
        &format!(
            "Ring the phones for (seconds, {} to {}) before voicemail answers",
            MAILBOX_RING_SECS.start(),
            MAILBOX_RING_SECS.end()
        ),
        "ring_secs",
        html! {
            input id=(id) type="number" name="ring_secs" data-type="number"
                min=(MAILBOX_RING_SECS.start()) max=(MAILBOX_RING_SECS.end()) value=(s.ring_secs);
        },
    )
}

fn email_field(s: &Settings, id: &str) -> Markup {
    field(
        "E-mail each new message to (empty: no e-mail)",
        "email",
        html! {
            input id=(id) type="email" name="email" maxlength="254" autocomplete="email"
                data-empty="null" value=(s.email.as_deref().unwrap_or(""));
        },
    )
}

/// `#voicemail-settings`: on or off, the e-mail, the ring time.
fn my_settings_form(s: &Settings) -> Markup {
    html! {
        form.form-stacked #voicemail-settings data-api={ "PUT " (s.url()) } data-then="reload" {
            (form_error())
            label.check {
                input #voicemail-enabled type="checkbox" name="enabled" checked[s.enabled];
                "Callers can leave messages"
            }
            p.field-error data-for="enabled" hidden {}
            (email_field(s, "voicemail-email"))
            (ring_field(s, "voicemail-ring"))
            (s.kept(&["enabled", "email", "ring_secs"]))
            div.form-actions {
                button.btn.btn-primary #voicemail-settings-submit type="submit" { "Save voicemail settings" }
            }
        }
    }
}

const PIN_HINT: &str = "6 to 12 digits; not one digit repeated, not a run such as 123456, not the \
                        extension's number, not a repeated block such as 121212.";

/// `#voicemail-pin`: a new PIN, typed twice.
fn pin_form(s: &Settings) -> Markup {
    html! {
        form.form-stacked #voicemail-pin data-api={ "PUT " (s.url()) } data-then="reload" {
            (form_error())
            (field("New PIN", "pin", html! {
                input #voicemail-pin-new type="password" name="pin" inputmode="numeric"
                    autocomplete="new-password" minlength="6" maxlength="12" required;
            }))
            (field("Repeat the new PIN", "repeat_pin", html! {
                input #voicemail-pin-repeat type="password" name="repeat_pin" inputmode="numeric"
                    autocomplete="new-password" maxlength="12" data-skip data-match="pin" required;
            }))
            p.hint { (PIN_HINT) }
            (s.kept(&[]))
            div.form-actions {
                button.btn.btn-primary #voicemail-pin-submit type="submit" { "Change PIN" }
            }
        }
    }
}

/// The greetings of a mailbox: the field, and its label on the user's own page and on the admin's.
const GREETINGS: [(&str, &str, &str); 3] = [
    (
        "greeting_unavailable",
        "When you do not answer or have no phone",
        "No answer or no phone",
    ),
    ("greeting_busy", "When you are busy", "Busy"),
    (
        "greeting_name",
        "Your name, which the default greeting says in place of your number",
        "Name, said by the default greeting",
    ),
];

/// The greetings, each with its player and a button that goes back to the default: on the user's
/// own page (`mine`, with ids: `#voicemail-greetings`, `#voicemail-{field}`) or in an admin's form.
fn greetings(s: &Settings, mine: bool) -> Markup {
    let ids = |id: String| mine.then_some(id);
    html! {
        dl.kv.voicemail-greetings id=[ids("voicemail-greetings".into())] {
            @for (name, label, admin_label) in GREETINGS {
                @let set = match name {
                    "greeting_unavailable" => &s.greeting_unavailable,
                    "greeting_busy" => &s.greeting_busy,
                    _ => &s.greeting_name,
                };
                @let is_name = name == "greeting_name";
                dt { @if mine { (label) } @else { (admin_label) } }
                dd class={ "voicemail-" (name) } id=[ids(format!("voicemail-{name}"))] {
                    @if let Some(id) = set {
                        @let content = format!("/api/v1/audio/{}/content", enc(id));
                        audio.player controls preload="none" src=(content) {
                            a href=(content) { "Download" }
                        }
                        " "
                        button.btn.btn-small.voicemail-greeting-remove type="button"
                            data-api={ "PUT " (s.url()) } data-body=(s.body_with(name, Value::Null))
                            data-then="reload" {
                            @if is_name { "Say the number" } @else { "Use the default greeting" }
                        }
                    } @else if is_name {
                        span.muted { "none: the default greeting says the extension's number" }
                    } @else {
                        span.muted { "the default greeting" }
                    }
                }
            }
        }
    }
}

/// A WAV file saved as a greeting of the extension, then played when the chosen case happens
/// (`portal.js` points the mailbox at it): `#voicemail-greeting-upload` on the user's own page
/// (`mine`), a form of class `ext-voicemail-greeting` in an admin's.
fn greeting_upload(s: &Settings, mine: bool) -> Markup {
    let upload = format!("/api/v1/audio?owner={}", enc(&s.extension));
    let ids = |id: &str| mine.then(|| format!("voicemail-greeting-{id}"));
    let (you, your) = if mine {
        ("you", "your")
    } else {
        ("the user", "the user's")
    };
    html! {
        form.form.voicemail-greeting-form id=[ids("upload")] data-upload=(upload) data-then="greeting"
            data-mailbox-api={ "PUT " (s.url()) } data-mailbox=(Value::Object(s.body()).to_string()) {
            (form_error())
            input type="hidden" name="kind" value="greeting";
            (field("Play it", "use", html! {
                select id=[ids("use")] name="use" {
                    option value="greeting_unavailable" { "when " (you) " do not answer or have no phone" }
                    option value="greeting_busy" { "when " (you) " are busy" }
                    option value="greeting_name" { "as " (your) " name, in the default greeting" }
                }
            }))
            (field("Name", "name", html! {
                input id=[ids("name")] type="text" name="name" maxlength=(MAX_AUDIO_NAME)
                    placeholder="Empty: the file's name";
            }))
            div.wide {
                (field("WAV file", "body", html! {
                    input id=[ids("file")] type="file" name="file"
                        accept=".wav,audio/wav,audio/x-wav" required;
                }))
            }
            p.hint.wide {
                "16-bit PCM, mono, 8 or 16 kHz, at most ten minutes. It counts against "
                @if mine { "your extension's" } @else { "the extension's" }
                " storage; a greeting replaced stays on the Audio page until deleted."
            }
            div.form-actions {
                button.btn.btn-primary id=[ids("submit")] type="submit" { "Upload greeting" }
            }
        }
    }
}

/// An extension's mailbox on the admin's extensions page: its settings (a new one's defaults when
/// it has none yet, saved as a new mailbox), a new PIN, removing the PIN or the mailbox, and its
/// greetings (the name greeting `name` among them) with an upload.
pub(super) fn admin_form(number: &str, mailbox: Option<&Mailbox>, name: Option<&str>) -> Markup {
    let s = mailbox.map_or_else(
        || Settings::of_mailbox(&Mailbox::new(number, 0), None),
        |m| Settings::of_mailbox(m, name),
    );
    let number_field =
        |label: &str, name: &str, value: u16, range: &std::ops::RangeInclusive<u16>| {
            field(
                &format!("{label} ({} to {})", range.start(), range.end()),
                name,
                html! {
                    input type="number" name=(name) data-type="number" min=(range.start())
                        max=(range.end()) value=(value);
                },
            )
        };
    html! {
        form.form-stacked.ext-voicemail data-api={ "PUT " (s.url()) } data-then="reload" {
            (form_error())
            @if mailbox.is_none() {
                p.hint.ext-voicemail-none { "No mailbox yet: saving creates one." }
            }
            label.check {
                input type="checkbox" name="enabled" checked[s.enabled];
                "Callers can leave messages"
            }
            p.field-error data-for="enabled" hidden {}
            (number_field("Ring seconds before voicemail answers", "ring_secs", s.ring_secs, &MAILBOX_RING_SECS))
            (number_field("Longest message, seconds", "max_message_secs", s.max_message_secs, &MAILBOX_MESSAGE_SECS))
            (number_field("Messages kept at most", "max_messages", s.max_messages, &MAILBOX_MESSAGES))
            (field("E-mail each new message to (empty: no e-mail)", "email", html! {
                input type="email" name="email" maxlength="254" autocomplete="off" data-empty="null"
                    value=(s.email.as_deref().unwrap_or(""));
            }))
            (field("New PIN (empty: unchanged)", "pin", html! {
                input type="password" name="pin" inputmode="numeric" autocomplete="new-password"
                    maxlength="12";
            }))
            p.hint { (PIN_HINT) }
            (s.kept(&["enabled", "ring_secs", "max_message_secs", "max_messages", "email"]))
            div.form-actions {
                button.btn.btn-primary type="submit" {
                    @if mailbox.is_some() { "Save voicemail" } @else { "Create mailbox" }
                }
            }
        }
        @if let Some(m) = mailbox {
            p.ext-voicemail-pin {
                "PIN: "
                @if m.pin_hash.is_some() {
                    (badge("ok", "set")) " "
                    button.btn.btn-small.ext-voicemail-pin-remove type="button"
                        data-api={ "PUT " (s.url()) } data-body=(s.body_with("pin", Value::Null))
                        data-confirm={ "Remove the PIN of extension " (number) "'s mailbox?" }
                        data-then="reload" { "Remove PIN" }
                } @else {
                    (badge("warn", "not set"))
                }
            }
            details.ext-voicemail-greetings {
                summary.btn.btn-small { "Greetings" }
                (greetings(&s, false))
                (greeting_upload(&s, false))
            }
            button.btn.btn-small.btn-danger.ext-voicemail-delete type="button"
                data-api={ "DELETE " (s.url()) }
                data-confirm={ "Delete the mailbox of extension " (number) " with every message in it?" }
                data-then="reload" { "Delete mailbox" }
        }
    }
}
