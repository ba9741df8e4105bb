//! The audio store in the API: list, upload (prompts, music, greetings), download, delete, quotas.
//!
//! Cluster files (prompts, music on hold) are configuration: the `extensions` grant reads and
//! changes them. Files of an extension (recordings, voicemail, greetings) follow the role's
//! `recordings` scope: all of them, the account's own extension's, or none. An extension's own
//! voicemail and greetings are its user's whatever the role (the mailbox is theirs), and a
//! greeting, which the `extensions` grant uploads, is the grant's too. Every download of an
//! extension's file is in the audit log.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use storage::Command;
use storage::audio::{
    AudioFile, AudioKind, AudioQuotas, AudioUsage, CallRecording, MAX_AUDIO_NAME,
};
use storage::model::AuditEntry;
use storage::voicemail::Mailbox;
use storage::web::Scope;
use tokio::io::AsyncReadExt;

use super::AppState;
use super::access::Principal;
use super::error::ApiError;
use super::extensions::validate_number;
use super::features::existing_extension;
use super::guard::ClientAddr;
use super::json::JsonBody;
use super::paging::ListQuery;
use crate::audio::{AudioError, NewAudio};
use crate::time::now_millis;

/// Largest upload: about 17 minutes of 8 kHz 16-bit mono, or half that at 16 kHz.
pub(crate) const MAX_UPLOAD_BYTES: usize = 16 * 1024 * 1024;
/// Longest prompt or music accepted.
const MAX_UPLOAD_SECS: u32 = 600;

impl From<AudioError> for ApiError {
    fn from(e: AudioError) -> Self {
        match e.http_status() {
            404 => Self::NotFound(e.to_string()),
            507 => Self::InsufficientStorage(e.to_string()),
            503 => Self::Unavailable(e.to_string()),
            _ => Self::Internal(e.to_string()),
        }
    }
}

/// Whether `who` may read (and delete) `file`. The portal's `/audio` page lists by the same rule,
/// through [`Principal::may_access_audio`] (this module is private to the API).
pub(crate) fn may_access(who: &Principal, file: &AudioFile) -> bool {
    if file.owner.is_empty() {
        return who.grants.extensions;
    }
    let own = who.extension.as_deref() == Some(file.owner.as_str());
    match file.kind {
        AudioKind::Voicemail if own => return true,
        AudioKind::Greeting if own || who.grants.extensions => return true,
        _ => {}
    }
    match who.grants.recordings {
        Scope::All => true,
        Scope::Own => own,
        Scope::None => false,
    }
}

impl Principal {
    /// Whether this account may read (and delete) `file`: [`may_access`], reachable from the rest
    /// of the crate.
    pub(crate) fn may_access_audio(&self, file: &AudioFile) -> bool {
        may_access(self, file)
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct AudioView {
    #[serde(flatten)]
    file: AudioFile,
    /// Whether this node holds a copy.
    local: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct AudioList {
    audio: Vec<AudioView>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AudioQuery {
    kind: Option<String>,
    owner: Option<String>,
    /// A CDR's `id`: that call's recording segments.
    call_id: Option<String>,
}

fn parse_kind(kind: &str) -> Result<AudioKind, ApiError> {
    AudioKind::parse(kind).ok_or_else(|| {
        let names: Vec<_> = AudioKind::ALL.iter().map(|k| k.as_str()).collect();
        ApiError::invalid("kind", format!("must be one of {}", names.join(", ")))
    })
}

/// `GET /audio?kind=&owner=&call_id=`: the files the account may see, newest first.
pub(crate) async fn list(
    State(state): State<AppState>,
    who: Principal,
    ListQuery(q): ListQuery<AudioQuery>,
) -> Result<Json<AudioList>, ApiError> {
    let kind = q.kind.as_deref().map(parse_kind).transpose()?;
    state.cluster.linearizable_barrier().await?;
    let dir = state.cluster.audio_dir();
    let reader = state.cluster.reader();
    // A call's recordings through their index; anything else is a scan of the whole index.
    let files = match q.call_id.as_deref() {
        Some(c) if c.contains('/') => Vec::new(),
        Some(c) => reader
            .scan_prefix::<CallRecording>(&CallRecording::prefix(c))?
            .into_iter()
            .filter_map(|r| reader.get::<AudioFile>(&r.audio_id).transpose())
            .collect::<Result<Vec<_>, _>>()?,
        None => reader.list::<AudioFile>()?,
    };
    let mut audio: Vec<AudioView> = files
        .into_iter()
        .filter(|f| kind.is_none_or(|k| f.kind == k))
        .filter(|f| q.owner.as_deref().is_none_or(|o| f.owner == o))
        .filter(|f| {
            q.call_id
                .as_deref()
                .is_none_or(|c| f.call_id.as_deref() == Some(c))
        })
        .filter(|f| may_access(&who, f))
        .map(|file| AudioView {
            local: dir.has(&file.id),
            file,
        })
        .collect();
    audio.sort_by_key(|a| std::cmp::Reverse(a.file.created_at));
    Ok(Json(AudioList { audio }))
}

/// An entry the account may see, or 404 (also for one it may not: ids say nothing).
async fn visible(state: &AppState, who: &Principal, id: &str) -> Result<AudioFile, ApiError> {
    state.cluster.linearizable_barrier().await?;
    let file = state.audio.entry(id)?;
    if !may_access(who, &file) {
        return Err(AudioError::NotFound.into());
    }
    Ok(file)
}

/// `GET /audio/{id}`.
pub(crate) async fn get(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<AudioView>, ApiError> {
    let file = visible(&state, &who, &id).await?;
    Ok(Json(AudioView {
        local: state.cluster.audio_dir().has(&file.id),
        file,
    }))
}

/// `GET /audio/{id}/content`: the WAV, fetched from a holder first when this node has no copy.
pub(crate) async fn content(
    State(state): State<AppState>,
    who: Principal,
    client: ClientAddr,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    visible(&state, &who, &id).await?;
    let (file, data) = state.audio.open(&id).await?;
    if !file.owner.is_empty() {
        let entry = AuditEntry {
            at: now_millis(),
            seq: format!("{:08x}", rand::random::<u32>()),
            actor: who.username.clone(),
            source: client.0.to_string(),
            action: format!(
                "GET /api/v1/audio/{id}/content: downloaded {} of extension {}",
                file.kind.as_str(),
                file.owner
            ),
            status: 200,
            node_id: state.cluster.node_id(),
        };
        state.cluster.propose(Command::Audit(entry)).await?;
    }
    let stream = read_stream(data);
    Ok((
        [
            (header::CONTENT_TYPE, "audio/wav".to_owned()),
            (header::CONTENT_LENGTH, file.size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.wav\"", file.id),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UploadQuery {
    kind: String,
    name: String,
    /// A greeting's extension.
    #[serde(default)]
    owner: Option<String>,
}

/// Who a file of `kind` is uploaded for, checked against what `who` may do: nobody (the cluster)
/// for prompts and music (grant `extensions`); for a greeting, `owner`, an existing extension
/// (grant `extensions`, or the extension's own user).
async fn upload_owner(
    state: &AppState,
    who: &Principal,
    kind: AudioKind,
    owner: Option<&str>,
) -> Result<String, ApiError> {
    let owner = owner.filter(|o| !o.is_empty());
    match kind {
        AudioKind::Prompt | AudioKind::MusicOnHold => {
            who.require(who.grants.extensions)?;
            if owner.is_some() {
                return Err(ApiError::invalid(
                    "owner",
                    "only a greeting has an owner; prompts and music are the cluster's",
                ));
            }
            Ok(String::new())
        }
        AudioKind::Greeting => {
            let owner = owner.ok_or_else(|| {
                ApiError::invalid("owner", "required for a greeting: its extension's number")
            })?;
            who.require(who.grants.extensions || who.extension.as_deref() == Some(owner))?;
            if validate_number(owner).is_err() {
                return Err(ApiError::invalid(
                    "owner",
                    "an extension's number, 2 to 15 digits",
                ));
            }
            existing_extension(state, owner).await?;
            Ok(owner.to_owned())
        }
        AudioKind::Recording | AudioKind::Voicemail => Err(ApiError::invalid(
            "kind",
            "only prompt, music_on_hold and greeting files are uploaded; the PBX makes the others",
        )),
        AudioKind::Firmware => Err(ApiError::invalid(
            "kind",
            "phone firmware is uploaded with PUT /api/v1/firmware/{brand}/{model}",
        )),
    }
}

/// `POST /audio?kind=prompt|music_on_hold|greeting&name=…[&owner=…]` with a WAV body: validated
/// (16-bit PCM mono at 8 or 16 kHz, at most ten minutes), saved on a majority of the nodes, then
/// 201. A greeting counts against its extension's quota.
pub(crate) async fn upload(
    State(state): State<AppState>,
    who: Principal,
    ListQuery(q): ListQuery<UploadQuery>,
    body: Bytes,
) -> Result<(StatusCode, Json<AudioView>), ApiError> {
    let kind = parse_kind(&q.kind)?;
    let owner = upload_owner(&state, &who, kind, q.owner.as_deref()).await?;
    let name = checked_name(&q.name)?;
    let limits = pbx_media::wav::PromptLimits {
        max_bytes: MAX_UPLOAD_BYTES,
        max_seconds: MAX_UPLOAD_SECS,
    };
    pbx_media::wav::read_prompt(&body, limits).map_err(|e| ApiError::invalid("body", e))?;
    let new = NewAudio {
        kind,
        owner,
        name,
        call_id: None,
        retain_until: None,
    };
    let file = state.audio.save(new, &body).await?;
    Ok((StatusCode::CREATED, Json(AudioView { file, local: true })))
}

/// A prompt, music or greeting spoken from text.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SpeechBody {
    kind: String,
    name: String,
    #[serde(default)]
    owner: Option<String>,
    text: String,
    /// An espeak-ng voice (`en` when absent).
    #[serde(default)]
    voice: Option<String>,
}

/// `POST /audio/speech {kind, name, owner?, text, voice?}`: the text spoken by the node's
/// synthesiser (espeak-ng; `503` on a node without it), brought to 8 kHz and saved as `kind` on a
/// majority of the nodes like an uploaded file: 201. The same rights as an upload.
pub(crate) async fn speech(
    State(state): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<SpeechBody>,
) -> Result<(StatusCode, Json<AudioView>), ApiError> {
    use crate::audio::speech::{self, SpeechError};
    let kind = parse_kind(&body.kind)?;
    let owner = upload_owner(&state, &who, kind, body.owner.as_deref()).await?;
    let name = checked_name(&body.name)?;
    let voice = body.voice.as_deref().unwrap_or("en");
    let wav = speech::speak(&body.text, voice)
        .await
        .map_err(|e| match e {
            SpeechError::Text => ApiError::invalid("text", e.to_string()),
            SpeechError::Voice => ApiError::invalid("voice", e.to_string()),
            SpeechError::NotInstalled => ApiError::Unavailable(e.to_string()),
            SpeechError::Failed(_) | SpeechError::Output(_) => ApiError::Internal(e.to_string()),
        })?;
    let new = NewAudio {
        kind,
        owner,
        name,
        call_id: None,
        retain_until: None,
    };
    let file = state.audio.save(new, &wav).await?;
    tracing::info!(audio = %file.id, kind = %body.kind, by = %who.username, chars = body.text.chars().count(), "prompt spoken from text");
    Ok((StatusCode::CREATED, Json(AudioView { file, local: true })))
}

/// An audio file's name: trimmed, 1 to [`MAX_AUDIO_NAME`] bytes, no control characters.
fn checked_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_AUDIO_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name",
            format!("1 to {MAX_AUDIO_NAME} bytes, no control characters"),
        ));
    }
    Ok(name.to_owned())
}

/// `DELETE /audio/{id}`: out of the index at once; each node drops its copy on its next pass.
pub(crate) async fn delete(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let file = visible(&state, &who, &id).await?;
    if file.kind == AudioKind::Greeting
        && let Some(mailbox) = state.cluster.reader().get::<Mailbox>(&file.owner)?
    {
        let name = state
            .cluster
            .reader()
            .get::<storage::voicemail::MailboxName>(&file.owner)?
            .map(|n| n.greeting);
        for (field, greeting) in [
            ("greeting_unavailable", &mailbox.greeting_unavailable),
            ("greeting_busy", &mailbox.greeting_busy),
            ("greeting_name", &name),
        ] {
            if greeting.as_deref() == Some(file.id.as_str()) {
                return Err(ApiError::Conflict(format!(
                    "greeting {id} is used by the mailbox of extension {} ({field})",
                    file.owner
                )));
            }
        }
    }
    state
        .propose_checked(Command::DeleteAudioFile { id: file.id })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize)]
pub(crate) struct QuotaView {
    #[serde(flatten)]
    quotas: AudioQuotas,
    used_bytes: u64,
    files: u64,
}

/// `GET /audio-quotas`: the limits and the cluster's usage.
pub(crate) async fn get_quotas(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<QuotaView>, ApiError> {
    who.require(who.grants.extensions)?;
    state.cluster.linearizable_barrier().await?;
    let reader = state.cluster.reader();
    let quotas = reader
        .get::<AudioQuotas>(AudioQuotas::KEY)?
        .unwrap_or_default();
    let usage = reader
        .get::<AudioUsage>(&AudioUsage::key_for(AudioUsage::TOTAL))?
        .unwrap_or_default();
    Ok(Json(QuotaView {
        quotas,
        used_bytes: usage.bytes,
        files: usage.files,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuotasBody {
    per_owner_bytes: u64,
    total_bytes: u64,
}

/// `PUT /audio-quotas`. Lowering a quota below what is stored deletes nothing: new files are
/// refused until enough is deleted or expires.
pub(crate) async fn put_quotas(
    State(state): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<QuotasBody>,
) -> Result<Json<AudioQuotas>, ApiError> {
    who.require(who.grants.extensions)?;
    if body.per_owner_bytes == 0 || body.total_bytes == 0 {
        return Err(ApiError::invalid("quotas", "must be positive"));
    }
    if body.per_owner_bytes > body.total_bytes {
        return Err(ApiError::invalid(
            "per_owner_bytes",
            "cannot exceed total_bytes",
        ));
    }
    let quotas = AudioQuotas {
        per_owner_bytes: body.per_owner_bytes,
        total_bytes: body.total_bytes,
    };
    state
        .propose_checked(Command::PutAudioQuotas(quotas))
        .await?;
    Ok(Json(quotas))
}

/// What `data` reads, as a stream of chunks (a download without holding the file in memory).
pub(crate) fn read_stream<R>(data: R) -> impl futures::Stream<Item = std::io::Result<Bytes>>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    futures::stream::unfold(Some(data), |state| async move {
        let mut data = state?;
        let mut buf = vec![0u8; 64 * 1024];
        match data.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(data)))
            }
            Err(e) => Some((Err::<Bytes, _>(e), None)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage::web::Grants;

    fn who(grants: Grants, extension: Option<&str>) -> Principal {
        Principal {
            username: "u".into(),
            role: "r".into(),
            extension: extension.map(Into::into),
            grants,
            session: None,
            must_change_password: false,
            needs_totp: false,
        }
    }

    fn file(kind: AudioKind, owner: &str) -> AudioFile {
        AudioFile {
            id: "0".repeat(32),
            kind,
            owner: owner.into(),
            name: "f".into(),
            call_id: None,
            size: 1,
            sha256: "0".repeat(64),
            created_at: 1,
            retain_until: None,
            holders: vec![1],
        }
    }

    #[test]
    fn an_extensions_own_voicemail_and_greetings_are_its_users() {
        let no_recordings = Grants {
            recordings: Scope::None,
            ..Grants::USER
        };
        for grants in [Grants::USER, no_recordings] {
            let own = who(grants, Some("1001"));
            assert!(may_access(&own, &file(AudioKind::Voicemail, "1001")));
            assert!(may_access(&own, &file(AudioKind::Greeting, "1001")));
            assert!(!may_access(&own, &file(AudioKind::Voicemail, "1002")));
            assert!(!may_access(&own, &file(AudioKind::Greeting, "1002")));
            assert!(!may_access(&own, &file(AudioKind::Prompt, "")));
        }
        // Recordings follow the scope alone.
        assert!(may_access(
            &who(Grants::USER, Some("1001")),
            &file(AudioKind::Recording, "1001")
        ));
        assert!(!may_access(
            &who(no_recordings, Some("1001")),
            &file(AudioKind::Recording, "1001")
        ));
        // An unrelated account sees none of 1001's; the extensions grant sees its greetings.
        let other = who(Grants::USER, Some("1002"));
        assert!(!may_access(&other, &file(AudioKind::Voicemail, "1001")));
        let helpdesk = who(
            Grants {
                extensions: true,
                ..no_recordings
            },
            None,
        );
        assert!(may_access(&helpdesk, &file(AudioKind::Greeting, "1001")));
        assert!(!may_access(&helpdesk, &file(AudioKind::Voicemail, "1001")));
        assert!(may_access(
            &who(Grants::OPERATOR, None),
            &file(AudioKind::Voicemail, "1001")
        ));
    }
}
