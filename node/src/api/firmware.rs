//! `/api/v1/firmware`: desk-phone firmware per brand and model (grant `extensions`).
//!
//! An image is a file of the audio store (kind `firmware`: the bytes are replicated like audio,
//! saved once a majority of the nodes holds a checked copy) named by a [`Firmware`] entry. A
//! device of that brand and model is told its URL in its configuration and fetches it from any
//! node with its own credential (see `provision`). Uploading again replaces the image (the old
//! file is deleted); deleting the file through `/audio` forgets the entry with it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use storage::Command;
use storage::audio::AudioKind;
use storage::model::UnixMillis;
use storage::provisioning::{Brand, Firmware, MAX_FETCH_FIELD, check_model};

use super::AppState;
use super::access::Principal;
use super::error::ApiError;
use super::paging::ListQuery;
use crate::audio::NewAudio;
use crate::time::now_millis;

/// Largest firmware image (the cluster's blob transfers take up to 256 MiB; an upload is held in
/// memory once).
pub(crate) const MAX_FIRMWARE_BYTES: usize = 128 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UploadQuery {
    /// The file name the phone asks for (`T54W-96.86.0.70.rom`).
    name: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct FirmwareView {
    pub brand: Brand,
    pub model: String,
    pub file_name: String,
    pub audio_id: String,
    pub size: u64,
    pub sha256: String,
    pub uploaded_at: UnixMillis,
}

impl From<Firmware> for FirmwareView {
    fn from(f: Firmware) -> Self {
        Self {
            brand: f.brand,
            model: f.model,
            file_name: f.file_name,
            audio_id: f.audio_id,
            size: f.size,
            sha256: f.sha256,
            uploaded_at: f.uploaded_at,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct FirmwareList {
    pub firmware: Vec<FirmwareView>,
}

fn brand_model(brand: &str, model: &str) -> Result<(Brand, String), ApiError> {
    let brand = Brand::parse(&brand.to_ascii_lowercase()).ok_or_else(|| {
        ApiError::invalid(
            "brand",
            format!("one of {}", Brand::ALL.map(Brand::as_str).join(", ")),
        )
    })?;
    check_model(model).map_err(|r| ApiError::invalid("model", r))?;
    Ok((brand, model.to_owned()))
}

fn check_file_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=MAX_FETCH_FIELD).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "name",
            format!(
                "1 to {MAX_FETCH_FIELD} letters, digits, '-', '_' or '.', not starting with '.'"
            ),
        ))
    }
}

/// `PUT /firmware/{brand}/{model}?name=…` with the image as the body: `201` (or `200` when it
/// replaced one) once a majority of the nodes holds it.
pub(crate) async fn put(
    State(state): State<AppState>,
    who: Principal,
    Path((brand, model)): Path<(String, String)>,
    ListQuery(q): ListQuery<UploadQuery>,
    body: Bytes,
) -> Result<(StatusCode, Json<FirmwareView>), ApiError> {
    who.require(who.grants.extensions)?;
    let (brand, model) = brand_model(&brand, &model)?;
    check_file_name(&q.name)?;
    if body.is_empty() {
        return Err(ApiError::invalid("body", "an empty file"));
    }
    let new = NewAudio {
        kind: AudioKind::Firmware,
        owner: String::new(),
        name: format!("{} {model} {}", brand.as_str(), q.name),
        call_id: None,
        retain_until: None,
    };
    let file = state.audio.save(new, &body).await?;
    let key = Firmware::key_for(brand, &model);
    let old = state.cluster.reader().get::<Firmware>(&key)?;
    let fw = Firmware {
        brand,
        model,
        file_name: q.name,
        audio_id: file.id.clone(),
        size: file.size,
        sha256: file.sha256.clone(),
        uploaded_at: now_millis(),
    };
    if let Err(e) = state
        .propose_checked(Command::PutFirmware(fw.clone()))
        .await
    {
        // The image is in the store but named by nothing: take it out again.
        let _ = state
            .cluster
            .propose(Command::DeleteAudioFile { id: file.id })
            .await;
        return Err(e);
    }
    let replaced = old.filter(|o| o.audio_id != fw.audio_id);
    if let Some(o) = &replaced
        && let Err(e) = state
            .cluster
            .propose(Command::DeleteAudioFile {
                id: o.audio_id.clone(),
            })
            .await
    {
        tracing::warn!(audio_id = %o.audio_id, error = %e, "firmware: the replaced image was not deleted");
    }
    metrics::counter!("pbx_firmware_uploads_total").increment(1);
    tracing::info!(brand = fw.brand.as_str(), model = %fw.model, file = %fw.file_name, bytes = fw.size, "firmware uploaded");
    let status = if replaced.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(fw.into())))
}

pub(crate) async fn list(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<FirmwareList>, ApiError> {
    who.require(who.grants.extensions)?;
    state.cluster.linearizable_barrier().await?;
    let firmware = state
        .cluster
        .reader()
        .list::<Firmware>()?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(FirmwareList { firmware }))
}

/// `DELETE /firmware/{brand}/{model}`: the entry and its image.
pub(crate) async fn delete(
    State(state): State<AppState>,
    who: Principal,
    Path((brand, model)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    who.require(who.grants.extensions)?;
    let (brand, model) = brand_model(&brand, &model)?;
    let key = Firmware::key_for(brand, &model);
    let missing = || ApiError::NotFound(format!("no firmware for {} {model}", brand.as_str()));
    let fw = state
        .cluster
        .reader()
        .get::<Firmware>(&key)?
        .ok_or_else(missing)?;
    state
        .propose_checked(Command::DeleteFirmware { key })
        .await?;
    // The image goes with its entry: nothing else names a firmware file.
    if let Err(e) = state
        .cluster
        .propose(Command::DeleteAudioFile {
            id: fw.audio_id.clone(),
        })
        .await
    {
        tracing::warn!(audio_id = %fw.audio_id, error = %e, "firmware: the image was not deleted");
    }
    tracing::info!(brand = brand.as_str(), model = %model, "firmware deleted");
    Ok(StatusCode::NO_CONTENT)
}
