//! `/api/v1/cdrs`: call detail records by start time, filtered and paged, as JSON or CSV.
//!
//! CDR keys are `{started_at:020}-{id}`, so a time range is a key range and the paging cursor is simply
//! the key of the last record the previous page looked at ([`super::paging`]). The work per request is
//! bounded: at most [`visit_budget`] rows are read, and when the budget runs out before the page is
//! full the answer still carries a cursor, so a filter that matches nothing costs a bounded amount per
//! request.
//!
//! An `extension` filter reads the replicated index of CDRs by extension (`{extension}/{cdr key}`,
//! [`CdrIndexEntry`]) instead of the table once that index is complete ([`CdrIndexProgress`]): the
//! extension's own CDRs, in the same key order, so a page fills with them however many other calls
//! there are, and the cursor is the same CDR key. Until a cluster that predates the index has
//! backfilled it, the table is scanned as before: slower to fill a page, never wrong.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use storage::model::{CallDetail, CdrIndexEntry, CdrIndexProgress, Disposition, UnixMillis};
use storage::routing::{CallRoute, Direction};
use storage::{NodeId, Record as _, StorageError};

use super::AppState;
use super::access::Principal;
use super::error::ApiError;
use super::paging::{self, LIMITS, Limits, ListQuery, Page, PageRequest, RangeSource, Scan};

/// CSV exports default to, and are capped at, this many rows.
const CSV_LIMITS: Limits = Limits {
    default: 100_000,
    max: 100_000,
};
/// Rows visited per request: ten per row asked for, within these bounds.
const MIN_VISIT: usize = 10_000;
const MAX_VISIT: usize = 200_000;
const MAX_EXTENSION_LEN: usize = 32;
/// The last instant RFC 3339 can write, 9999-12-31T23:59:59.999Z.
const MAX_MILLIS: UnixMillis = 253_402_300_799_999;
/// Sorts after every CDR key (they start with digits): the end of the table.
const END_OF_TABLE: &str = ":";
/// The longest RFC 3339 time worth parsing (nine fraction digits and an offset make 35).
const MAX_TIME_LEN: usize = 40;

/// Every direction, in the order error messages list them.
const DIRECTIONS: [Direction; 3] = [Direction::Internal, Direction::Inbound, Direction::Outbound];

/// The CSV export's columns, in order.
pub(crate) const CSV_COLUMNS: [&str; 18] = [
    "id",
    "caller",
    "callee",
    "started_at",
    "answered_at",
    "ended_at",
    "duration_secs",
    "disposition",
    "hangup_side",
    "cause",
    "sip_status",
    "node_id",
    "direction",
    "trunk",
    "did",
    "route",
    "dialled",
    "sent",
];

/// The query string as sent. Every field is text so that each gets its own clear error message.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCdrQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub extension: Option<String>,
    pub disposition: Option<String>,
    pub direction: Option<String>,
    pub trunk: Option<String>,
    pub limit: Option<String>,
    pub after: Option<String>,
    pub format: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Csv,
}

/// A checked CDR query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CdrQuery {
    /// Start time, inclusive.
    pub from: Option<UnixMillis>,
    /// Start time, exclusive.
    pub to: Option<UnixMillis>,
    /// Caller or callee.
    pub extension: Option<String>,
    pub disposition: Option<Disposition>,
    /// Internal (no trunk), inbound or outbound.
    pub direction: Option<Direction>,
    /// The trunk the call went through, by exact name.
    pub trunk: Option<String>,
    /// `after` (a CDR key) and `limit`.
    pub page: PageRequest,
    pub format: Format,
}

impl CdrQuery {
    pub(crate) fn parse(raw: RawCdrQuery) -> Result<Self, ApiError> {
        let format = match raw.format.as_deref() {
            None | Some("json") => Format::Json,
            Some("csv") => Format::Csv,
            Some(_) => return Err(bad("format must be json or csv")),
        };
        let from = raw
            .from
            .as_deref()
            .map(|s| parse_time("from", s))
            .transpose()?;
        let to = raw.to.as_deref().map(|s| parse_time("to", s)).transpose()?;
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            return Err(bad("from must not be later than to"));
        }
        if let Some(e) = &raw.extension
            && (!(1..=MAX_EXTENSION_LEN).contains(&e.len())
                || !e.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(bad(format!(
                "extension must be 1 to {MAX_EXTENSION_LEN} digits"
            )));
        }
        let disposition = raw
            .disposition
            .as_deref()
            .map(|d| {
                Disposition::parse(d).ok_or_else(|| {
                    let names: Vec<&str> = Disposition::ALL.iter().map(|d| d.as_str()).collect();
                    bad(format!("disposition must be one of {}", names.join(", ")))
                })
            })
            .transpose()?;
        let direction = raw
            .direction
            .as_deref()
            .map(|d| {
                DIRECTIONS
                    .into_iter()
                    .find(|x| x.as_str() == d)
                    .ok_or_else(|| {
                        let names: Vec<&str> = DIRECTIONS.iter().map(|d| d.as_str()).collect();
                        bad(format!("direction must be one of {}", names.join(", ")))
                    })
            })
            .transpose()?;
        if let Some(t) = &raw.trunk {
            // Trunk names follow the trunk API's rule, so a name that cannot exist is a typo.
            super::routes::validate_name("trunk", t)?;
        }
        let limits = match format {
            Format::Json => LIMITS,
            Format::Csv => CSV_LIMITS,
        };
        let page =
            PageRequest::parse(raw.after, raw.limit.as_deref(), limits, paging::is_time_key)?;
        Ok(Self {
            from,
            to,
            extension: raw.extension,
            disposition,
            direction,
            trunk: raw.trunk,
            page,
            format,
        })
    }

    /// The first key to read: the later of `from` and just past the cursor.
    fn start_key(&self) -> String {
        paging::start_key(
            self.from.map(|f| format!("{f:020}")),
            self.page.after.as_deref(),
        )
    }

    /// The first key not to read: every record that started at `to` or later sorts at or after it.
    fn end_key(&self) -> String {
        self.to
            .map_or_else(|| END_OF_TABLE.to_owned(), |t| format!("{t:020}"))
    }

    fn filtered(&self) -> bool {
        self.extension.is_some() || self.disposition.is_some() || self.route_filtered()
    }

    /// Whether a filter needs each record's [`CallRoute`].
    fn route_filtered(&self) -> bool {
        self.direction.is_some() || self.trunk.is_some()
    }

    /// The filters on the CDR itself.
    fn matches(&self, r: &CallDetail) -> bool {
        self.extension
            .as_ref()
            .is_none_or(|e| r.caller == *e || r.callee == *e)
            && self.disposition.is_none_or(|d| r.disposition == d)
    }

    /// The filters on the call's route (`None`: a call between extensions).
    fn matches_route(&self, route: Option<&CallRoute>) -> bool {
        self.direction.is_none_or(|d| d == direction_of(route))
            && self
                .trunk
                .as_ref()
                .is_none_or(|t| route.is_some_and(|r| r.trunk == *t))
    }
}

/// A call without a [`CallRoute`] stayed between extensions.
fn direction_of(route: Option<&CallRoute>) -> Direction {
    route.map_or(Direction::Internal, |r| r.direction)
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

/// Rows a request may visit for a page of `limit`.
pub(crate) fn visit_budget(limit: usize) -> usize {
    limit
        .saturating_add(1)
        .saturating_mul(10)
        .clamp(MIN_VISIT, MAX_VISIT)
}

/// The [`CallRoute`] stored under a CDR's key, if any ([`storage::StateReader::get`], or a map in
/// tests).
type RouteLookup<'a> = &'a dyn Fn(&str) -> Result<Option<CallRoute>, StorageError>;

/// The CDR stored under a key ([`storage::StateReader::get`], or a map in tests).
type CdrLookup<'a> = &'a dyn Fn(&str) -> Result<Option<CallDetail>, StorageError>;

/// The index of CDRs by extension, and how to read the CDR an entry names.
#[derive(Clone, Copy)]
pub(crate) struct CdrIndex<'a> {
    pub entries: &'a dyn RangeSource<CdrIndexEntry>,
    pub cdr: CdrLookup<'a>,
}

/// One extension's CDRs through the index, as a [`RangeSource`] of CDRs: a range of CDR keys is the
/// same range under the extension's prefix, and each entry visited is one row (its CDR read by
/// key). Keys in and out are CDR keys, so cursors, budgets and filters work as on the table.
struct ByExtension<'a> {
    prefix: String,
    index: CdrIndex<'a>,
}

impl RangeSource<CallDetail> for ByExtension<'_> {
    fn scan(
        &self,
        from: &str,
        to: &str,
        max_rows: usize,
        keep: &mut dyn FnMut(&CallDetail) -> bool,
    ) -> Result<(Vec<CallDetail>, Option<String>), StorageError> {
        let mut rows = Vec::new();
        let mut failure = None;
        let mut visit = |entry: &CdrIndexEntry| {
            if failure.is_none() {
                match (self.index.cdr)(&entry.cdr_key) {
                    Ok(Some(cdr)) if keep(&cdr) => rows.push(cdr),
                    // Not kept, or (never: an entry is written and pruned with its CDR) no CDR.
                    Ok(_) => {}
                    Err(e) => failure = Some(e),
                }
            }
            false
        };
        let (from, to) = (
            format!("{}{from}", self.prefix),
            format!("{}{to}", self.prefix),
        );
        let (_, resume) = self.index.entries.scan(&from, &to, max_rows, &mut visit)?;
        if let Some(e) = failure {
            return Err(e);
        }
        let resume = resume
            .map(|key| match key.strip_prefix(&self.prefix) {
                Some(cdr_key) => Ok(cdr_key.to_owned()),
                None => Err(StorageError::Corrupt(format!(
                    "index scan under {:?} stopped at {key:?}",
                    self.prefix
                ))),
            })
            .transpose()?;
        Ok((rows, resume))
    }
}

/// [`fetch`] from the index when the query names an extension and the index is complete (`index`
/// is given only then), from the table otherwise.
fn fetch_rows(
    table: &dyn RangeSource<CallDetail>,
    index: Option<CdrIndex<'_>>,
    routes: RouteLookup<'_>,
    q: &CdrQuery,
    budget: usize,
) -> Result<Page<CdrRow>, StorageError> {
    match (&q.extension, index) {
        (Some(extension), Some(index)) => {
            let src = ByExtension {
                prefix: CdrIndexEntry::prefix(extension),
                index,
            };
            fetch(&src, routes, q, budget)
        }
        _ => fetch(table, routes, q, budget),
    }
}

/// A CDR and how its call was routed (`None`: between extensions).
#[derive(Debug, Clone)]
pub(crate) struct CdrRow {
    pub cdr: CallDetail,
    pub route: Option<CallRoute>,
}

/// Up to `q.page.limit` matching records in key order with their routes, visiting at most `budget`
/// rows.
///
/// The direction and trunk filters are applied during the scan like the others, reading each
/// candidate's route beside it (one point read, only for rows the CDR's own filters keep), so a page
/// is filled, the budget bounds the work and `next` is the last row looked at, exactly as for the
/// other filters.
fn fetch(
    src: &dyn RangeSource<CallDetail>,
    routes: RouteLookup<'_>,
    q: &CdrQuery,
    budget: usize,
) -> Result<Page<CdrRow>, StorageError> {
    // The routes of the rows kept, so that the page does not read them twice; the first failed read,
    // after which nothing more is kept and the request fails.
    let kept: RefCell<HashMap<String, CallRoute>> = RefCell::default();
    let failure: RefCell<Option<StorageError>> = RefCell::default();
    let matches = |r: &CallDetail| {
        if !q.matches(r) {
            return false;
        }
        if !q.route_filtered() {
            return true;
        }
        if failure.borrow().is_some() {
            return false;
        }
        let key = r.key();
        match routes(&key) {
            Ok(route) => {
                let keep = q.matches_route(route.as_ref());
                if keep && let Some(route) = route {
                    kept.borrow_mut().insert(key, route);
                }
                keep
            }
            Err(e) => {
                *failure.borrow_mut() = Some(e);
                false
            }
        }
    };
    let to = q.end_key();
    let page = paging::scan_page(
        src,
        Scan {
            from: q.start_key(),
            to: &to,
            limit: q.page.limit,
            budget,
            filter: q
                .filtered()
                .then_some(&matches as &dyn Fn(&CallDetail) -> bool),
        },
    )?;
    if let Some(e) = failure.into_inner() {
        return Err(e);
    }
    let mut kept = kept.into_inner();
    let items = page
        .items
        .into_iter()
        .map(|cdr| {
            let key = cdr.key();
            // With a route filter every kept row's route was read: absent from `kept` is no route.
            let route = if q.route_filtered() {
                kept.remove(&key)
            } else {
                routes(&key)?
            };
            Ok(CdrRow { cdr, route })
        })
        .collect::<Result<Vec<_>, StorageError>>()?;
    Ok(Page {
        items,
        next: page.next,
    })
}

/// A CDR as the API shows it. JSON times are Unix milliseconds, as everywhere in this API.
#[derive(Debug, Serialize)]
pub(crate) struct CdrView {
    pub id: String,
    pub caller: String,
    pub callee: String,
    pub started_at: UnixMillis,
    pub answered_at: Option<UnixMillis>,
    pub ended_at: UnixMillis,
    pub duration_secs: u64,
    pub disposition: &'static str,
    pub hangup_side: &'static str,
    pub cause: String,
    pub sip_status: u16,
    pub node_id: NodeId,
    /// `internal`, `inbound` or `outbound`.
    pub direction: &'static str,
    /// The routing facts below are empty strings when they do not apply (all of them on an internal
    /// call; `did` on an outbound call, `sent` on an inbound one, `trunk` and `sent` on a call
    /// refused before a trunk was chosen), never null: a CallRoute itself stores them as empty
    /// strings, one spelling of "none" is simpler to filter on than two, and the CSV has no null
    /// either. (`answered_at` is null when absent because it is a time, not text.)
    pub trunk: String,
    pub did: String,
    /// The outbound or inbound route's name.
    pub route: String,
    /// The number as dialled, and as sent to the trunk (after strip and prepend).
    pub dialled: String,
    pub sent: String,
    /// The ids of the call's recording segments (`/audio/{id}/content`), oldest first: those the
    /// account's recordings scope lets it hear.
    pub recordings: Vec<String>,
}

impl From<CdrRow> for CdrView {
    fn from(CdrRow { cdr: c, route }: CdrRow) -> Self {
        let direction = direction_of(route.as_ref()).as_str();
        let (trunk, did, route, dialled, sent) = route
            .map(|r| (r.trunk, r.did, r.route, r.dialled, r.sent))
            .unwrap_or_default();
        Self {
            id: c.id,
            caller: c.caller,
            callee: c.callee,
            started_at: c.started_at,
            answered_at: c.answered_at,
            ended_at: c.ended_at,
            duration_secs: c.duration_secs,
            disposition: c.disposition.as_str(),
            hangup_side: c.hangup_side.as_str(),
            cause: c.cause,
            sip_status: c.sip_status,
            node_id: c.node_id,
            direction,
            trunk,
            did,
            route,
            dialled,
            sent,
            recordings: Vec::new(),
        }
    }
}

/// The recording segments of call `call_id` that an account with recordings scope `scope` (and
/// extension `own`) may hear, oldest first.
fn recordings_of(
    reader: &storage::StateReader,
    call_id: &str,
    scope: storage::web::Scope,
    own: Option<&str>,
) -> Result<Vec<String>, StorageError> {
    use storage::audio::CallRecording;
    use storage::web::Scope;
    if scope == Scope::None {
        return Ok(Vec::new());
    }
    let mut segments = reader.scan_prefix::<CallRecording>(&CallRecording::prefix(call_id))?;
    segments.retain(|r| scope == Scope::All || own == Some(r.owner.as_str()));
    segments.sort_by_key(|r| r.created_at);
    Ok(segments.into_iter().map(|r| r.audio_id).collect())
}

#[derive(Debug, Serialize)]
pub(crate) struct CdrPage {
    pub cdrs: Vec<CdrView>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Call detail records in start-time order.
///
/// Query (all optional): `from` (inclusive) and `to` (exclusive) on the start time, each an RFC 3339
/// time (`2026-11-28T10:00:00Z`; a space where the offset's `+` was, as an unencoded `+` decodes, is
/// read as `+`) or Unix milliseconds; `extension` (caller or callee, digits); `disposition`
/// (`answered`, `busy`, `no_answer`, `cancelled`, `unavailable`, `not_found`, `failed`, `denied`);
/// `direction` (`internal`, `inbound`, `outbound`); `trunk` (a trunk's exact name); `limit`
/// (JSON: default 100, at most 1000; CSV: default and at most 100 000); `after` (the `next` cursor of
/// the previous page); `format` (`json` or `csv`). Unknown parameters, and query strings over 2 KiB,
/// are refused with 400.
///
/// JSON: `{"cdrs": [{id, caller, callee, started_at, answered_at, ended_at, duration_secs,
/// disposition, hangup_side, cause, sip_status, node_id, direction, trunk, did, route, dialled,
/// sent}], "next": cursor}`, the routing facts empty strings where they do not apply, times in Unix
/// milliseconds like the rest of the API, `next` absent on the last page. CSV: an attachment with a
/// header row, RFC 3339 UTC times with milliseconds (what spreadsheets and people read), empty
/// `answered_at` when unanswered; the cursor, when there is more, is in the `X-Next-Cursor` header.
///
/// A page may hold fewer than `limit` records and still carry a cursor: each request visits a bounded
/// number of records ([`visit_budget`]), and a selective filter may not fill the page within it. An
/// `extension` filter visits only that extension's records once the index of CDRs by extension is
/// complete (see the module documentation).
pub(crate) async fn list(
    State(state): State<AppState>,
    who: Principal,
    ListQuery(raw): ListQuery<RawCdrQuery>,
) -> Result<Response, ApiError> {
    who.require(who.grants.cdrs != storage::web::Scope::None)?;
    let mut q = CdrQuery::parse(raw)?;
    if who.grants.cdrs == storage::web::Scope::Own {
        // Only the account's own extension's calls; asking for another's finds nothing to show.
        let Some(own) = who.extension.clone() else {
            return Err(ApiError::NotFound("no CDRs for this account".into()));
        };
        if q.extension.as_ref().is_some_and(|e| *e != own) {
            return Err(ApiError::NotFound("no such CDRs".into()));
        }
        q.extension = Some(own);
    }
    state.cluster.linearizable_barrier().await?;
    let reader = state.cluster.reader().clone();
    let (scope, own) = (who.grants.recordings, who.extension.clone());
    let (body, next) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let routes = |key: &str| reader.get::<CallRoute>(key);
        let cdr = |key: &str| reader.get::<CallDetail>(key);
        let indexed = q.extension.is_some()
            && reader
                .get::<CdrIndexProgress>(CdrIndexProgress::KEY)?
                .is_some_and(|p| p.complete);
        let index = indexed.then_some(CdrIndex {
            entries: &reader,
            cdr: &cdr,
        });
        let page = fetch_rows(&reader, index, &routes, &q, visit_budget(q.page.limit))?;
        let body = match q.format {
            Format::Json => {
                let mut cdrs: Vec<CdrView> = page.items.into_iter().map(CdrView::from).collect();
                for c in cdrs.iter_mut().filter(|c| c.answered_at.is_some()) {
                    c.recordings = recordings_of(&reader, &c.id, scope, own.as_deref())?;
                }
                Body::Json(CdrPage {
                    cdrs,
                    next: page.next.clone(),
                })
            }
            Format::Csv => Body::Csv(to_csv(&page.items)?),
        };
        Ok((body, page.next))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    match body {
        Body::Json(page) => Ok(Json(page).into_response()),
        Body::Csv(text) => csv_response(text, next),
    }
}

enum Body {
    Json(CdrPage),
    Csv(String),
}

/// The CSV attachment, with the cursor in `X-Next-Cursor` when there is more.
fn csv_response(text: String, next: Option<String>) -> Result<Response, ApiError> {
    let mut resp = (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"cdrs.csv\"",
            ),
        ],
        text,
    )
        .into_response();
    if let Some(cursor) = next {
        let value = HeaderValue::from_str(&cursor)
            .map_err(|_| ApiError::Internal(format!("cursor {cursor:?} cannot go in a header")))?;
        resp.headers_mut().insert("x-next-cursor", value);
    }
    Ok(resp)
}

/// A writer of RFC 4180 CSV: CRLF line ends, fields quoted only when they must be.
fn csv_writer(capacity: usize) -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .quote_style(csv::QuoteStyle::Necessary)
        // The writer quotes any field holding the comment character: with `'` that puts every defused
        // formula in quotes, as OWASP asks (a field with an apostrophe elsewhere is quoted too, which
        // changes nothing a reader sees).
        .comment(Some(b'\''))
        .from_writer(Vec::with_capacity(capacity))
}

/// Writes one row, each field defused first (see [`defuse`]).
fn write_row<'a>(
    w: &mut csv::Writer<Vec<u8>>,
    fields: impl IntoIterator<Item = &'a str>,
) -> csv::Result<()> {
    for f in fields {
        w.write_field(defuse(f).as_bytes())?;
    }
    // An empty record after the fields ends the row.
    w.write_record(None::<&[u8]>)
}

/// A field a spreadsheet would read as a formula (leading `=`, `+`, `-`, `@`, tab or CR, as OWASP
/// lists) gets a leading `'` so that it stays text; the writer then quotes it.
fn defuse(value: &str) -> Cow<'_, str> {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{value}"))
    } else {
        Cow::Borrowed(value)
    }
}

/// The CSV export: header row, CRLF line ends, RFC 4180 quoting, formula prefixes neutralised.
pub(crate) fn to_csv(rows: &[CdrRow]) -> Result<String, ApiError> {
    let failed = |e: csv::Error| ApiError::Internal(format!("writing CSV: {e}"));
    let mut w = csv_writer(150 + rows.len() * 200);
    write_row(&mut w, CSV_COLUMNS).map_err(failed)?;
    for CdrRow { cdr: r, route } in rows {
        let answered = r.answered_at.map(format_rfc3339).unwrap_or_default();
        let (started, ended) = (format_rfc3339(r.started_at), format_rfc3339(r.ended_at));
        let (duration, status) = (r.duration_secs.to_string(), r.sip_status.to_string());
        let node = r.node_id.to_string();
        let route = route.as_ref();
        let text = |f: fn(&CallRoute) -> &str| route.map_or("", f);
        let fields: [&str; 18] = [
            &r.id,
            &r.caller,
            &r.callee,
            &started,
            &answered,
            &ended,
            &duration,
            r.disposition.as_str(),
            r.hangup_side.as_str(),
            &r.cause,
            &status,
            &node,
            direction_of(route).as_str(),
            text(|r| &r.trunk),
            text(|r| &r.did),
            text(|r| &r.route),
            text(|r| &r.dialled),
            text(|r| &r.sent),
        ];
        write_row(&mut w, fields).map_err(failed)?;
    }
    let bytes = w.into_inner().map_err(|e| failed(e.into_error().into()))?;
    String::from_utf8(bytes).map_err(|e| ApiError::Internal(format!("CSV not UTF-8: {e}")))
}

/// `from`/`to`: Unix milliseconds (digits only) or an RFC 3339 time, from 1970 to the year 9999.
fn parse_time(name: &str, s: &str) -> Result<UnixMillis, ApiError> {
    let parsed = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<UnixMillis>().ok()
    } else {
        parse_rfc3339(s)
    };
    parsed.filter(|ms| *ms <= MAX_MILLIS).ok_or_else(|| {
        bad(format!(
            "{name} must be an RFC 3339 time from 1970 on, such as 2026-11-28T10:00:00Z, or Unix milliseconds"
        ))
    })
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` to Unix milliseconds (fraction truncated to
/// milliseconds). `None` when malformed, out of range, or before 1970.
pub(crate) fn parse_rfc3339(s: &str) -> Option<UnixMillis> {
    let b = s.as_bytes();
    // `time` also takes any byte between date and time and any number of fraction digits; this API
    // has always asked for `T` and at most nine digits (nanoseconds).
    let fraction_digits = match b.get(19) {
        Some(b'.') => b[20..].iter().take_while(|c| c.is_ascii_digit()).count(),
        _ => 0,
    };
    if s.len() > MAX_TIME_LEN || !matches!(b.get(10), Some(b'T' | b't')) || fraction_digits > 9 {
        return None;
    }
    // An unencoded `+` in a query string decodes to a space: read `±HH:MM`'s space back as `+`.
    let plus;
    let s = match b.len().checked_sub(6) {
        Some(i) if b[i] == b' ' => {
            plus = format!("{}+{}", &s[..i], &s[i + 1..]);
            plus.as_str()
        }
        _ => s,
    };
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    // Floor, so that a time a fraction of a millisecond before 1970 is before 1970.
    let ms = t.unix_timestamp_nanos().div_euclid(1_000_000);
    UnixMillis::try_from(ms).ok()
}

/// `2026-11-28T10:00:00.000Z`: RFC 3339, UTC, always with milliseconds. (`time`'s own RFC 3339
/// output drops a zero fraction; a fixed width is what exports want.)
pub(crate) fn format_rfc3339(ms: UnixMillis) -> String {
    let t = i128::from(ms)
        .checked_mul(1_000_000)
        .and_then(|ns| OffsetDateTime::from_unix_timestamp_nanos(ns).ok());
    match t {
        Some(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        // After the year 9999, which no record reaches: the milliseconds rather than a made-up date.
        None => ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::BTreeMap;

    use storage::model::HangupSide;

    use super::super::paging::testing::MapSource;
    use super::*;

    const HEADER: &str = "id,caller,callee,started_at,answered_at,ended_at,duration_secs,\
                          disposition,hangup_side,cause,sip_status,node_id,direction,trunk,did,\
                          route,dialled,sent\r\n";

    fn query(pairs: &[(&str, &str)]) -> Result<CdrQuery, ApiError> {
        let mut raw = RawCdrQuery::default();
        for (k, v) in pairs {
            let v = Some((*v).to_owned());
            match *k {
                "from" => raw.from = v,
                "to" => raw.to = v,
                "extension" => raw.extension = v,
                "disposition" => raw.disposition = v,
                "direction" => raw.direction = v,
                "trunk" => raw.trunk = v,
                "limit" => raw.limit = v,
                "after" => raw.after = v,
                "format" => raw.format = v,
                other => panic!("no parameter {other}"),
            }
        }
        CdrQuery::parse(raw)
    }

    fn refused(pairs: &[(&str, &str)], needle: &str) {
        match query(pairs) {
            Err(ApiError::BadRequest(msg)) => {
                assert!(msg.contains(needle), "{pairs:?}: {msg:?} lacks {needle:?}")
            }
            other => panic!("{pairs:?} gave {other:?}"),
        }
    }

    const T_2026_11_28_10H: UnixMillis = 1_795_860_000_000;

    #[test]
    fn defaults_and_both_time_forms() {
        let q = query(&[]).unwrap();
        assert_eq!(
            (q.page.limit, q.format, q.from, q.to),
            (100, Format::Json, None, None)
        );
        assert_eq!(query(&[("format", "csv")]).unwrap().page.limit, 100_000);
        let q = query(&[
            ("from", "2026-11-28T10:00:00Z"),
            ("to", "1795863600000"),
            ("extension", "1001"),
            ("disposition", "no_answer"),
            ("limit", "1000"),
        ])
        .unwrap();
        assert_eq!(q.from, Some(T_2026_11_28_10H));
        assert_eq!(q.to, Some(T_2026_11_28_10H + 3_600_000));
        assert_eq!(q.extension.as_deref(), Some("1001"));
        assert_eq!(q.disposition, Some(Disposition::NoAnswer));
        assert_eq!(q.page.limit, 1000);
        // Equal bounds are an empty range, not an error.
        assert!(query(&[("from", "5"), ("to", "5")]).is_ok());
        assert!(query(&[("format", "csv"), ("limit", "100000")]).is_ok());
    }

    #[test]
    fn rfc3339_forms() {
        let t = Some(T_2026_11_28_10H);
        assert_eq!(parse_rfc3339("2026-11-28T10:00:00Z"), t);
        assert_eq!(parse_rfc3339("2026-11-28t10:00:00z"), t);
        assert_eq!(parse_rfc3339("2026-11-28T11:30:00+01:30"), t);
        assert_eq!(parse_rfc3339("2026-11-28T11:30:00 01:30"), t, "decoded '+'");
        assert_eq!(parse_rfc3339("2026-11-28T09:00:00-01:00"), t);
        assert_eq!(parse_rfc3339("2026-11-28T10:00:00.5Z"), t.map(|t| t + 500));
        assert_eq!(
            parse_rfc3339("2026-11-28T10:00:00.123456789Z"),
            t.map(|t| t + 123)
        );
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000)
        );
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800_000));
        assert_eq!(parse_rfc3339("9999-12-31T23:59:59.999Z"), Some(MAX_MILLIS));
    }

    #[test]
    fn bad_times_are_refused() {
        for bad in [
            "",
            "yesterday",
            "2026-11-28",
            "2026-11-28T10:00:00",
            "2026-11-28 10:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-11-28T24:00:00Z",
            "2026-11-28T10:60:00Z",
            "2026-11-28T10:00:61Z",
            "2026-11-28T10:00:00.Z",
            "2026-11-28T10:00:00.1234567890Z",
            "2026-11-28T10:00:00+24:00",
            "2026-11-28T10:00:00+0100",
            "2026-11-28T10:00:00Zjunk",
            "+026-11-28T10:00:00Z",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:30:00+01:00",
            "-5",
            "1.5",
            "99999999999999999999999",
            "253402300800000",
        ] {
            refused(&[("from", bad)], "from must be an RFC 3339 time");
            assert!(parse_time("to", bad).is_err(), "{bad:?}");
        }
        refused(&[("to", "nope")], "to must be an RFC 3339 time");
    }

    #[test]
    fn bad_parameters_are_refused_with_their_name() {
        refused(
            &[
                ("from", "2026-11-28T11:00:00Z"),
                ("to", "2026-11-28T10:00:00Z"),
            ],
            "from must not be later than to",
        );
        refused(
            &[("disposition", "hung_up")],
            "disposition must be one of answered, busy",
        );
        refused(&[("disposition", "Answered")], "disposition");
        assert_eq!(
            query(&[("disposition", "denied")]).unwrap().disposition,
            Some(Disposition::Denied)
        );
        refused(
            &[("direction", "sideways")],
            "direction must be one of internal, inbound, outbound",
        );
        refused(&[("direction", "Inbound")], "direction");
        refused(&[("direction", "")], "direction");
        for (name, want) in [
            ("internal", Direction::Internal),
            ("inbound", Direction::Inbound),
            ("outbound", Direction::Outbound),
        ] {
            assert_eq!(query(&[("direction", name)]).unwrap().direction, Some(want));
        }
        refused(&[("trunk", "")], "trunk");
        refused(&[("trunk", "my trunk")], "trunk");
        refused(&[("trunk", &"t".repeat(33))], "trunk");
        let q = query(&[("trunk", "carrier-2_b")]).unwrap();
        assert_eq!(q.trunk.as_deref(), Some("carrier-2_b"));
        refused(&[("extension", "10a1")], "extension must be 1 to 32 digits");
        refused(&[("extension", "")], "extension");
        refused(&[("extension", &"1".repeat(33))], "extension");
        assert!(query(&[("extension", &"1".repeat(32))]).is_ok());
        refused(&[("limit", "0")], "limit must be 1 to 1000");
        refused(&[("limit", "1001")], "limit must be 1 to 1000");
        refused(&[("limit", "5000")], "limit");
        refused(&[("limit", "-1")], "limit");
        refused(&[("limit", "ten")], "limit");
        refused(
            &[("format", "csv"), ("limit", "100001")],
            "limit must be 1 to 100000",
        );
        refused(&[("format", "csv"), ("limit", "0")], "limit");
        refused(&[("format", "xml")], "format must be json or csv");
        refused(&[("after", "x")], "after must be the next cursor");
        refused(&[("after", "00000000000000000001")], "after");
        refused(&[("after", "00000000000000000001-")], "after");
        refused(&[("after", "0000000000000000000a-x")], "after");
        refused(&[("after", "00000000000000000001-a\nb")], "after");
        let long = format!("{:020}-{}", 1, "i".repeat(300));
        refused(&[("after", &long)], "after");
        assert!(query(&[("after", "00000000000000000001-call-1")]).is_ok());
    }

    #[test]
    fn time_formatting() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339(T_2026_11_28_10H + 1),
            "2026-11-28T10:00:00.001Z"
        );
        assert_eq!(
            format_rfc3339(1_709_164_800_000),
            "2024-02-29T00:00:00.000Z"
        );
        assert_eq!(format_rfc3339(951_868_799_999), "2000-02-29T23:59:59.999Z");
        assert_eq!(format_rfc3339(MAX_MILLIS), "9999-12-31T23:59:59.999Z");
        // Every day of four centuries round-trips, at a time that is not midnight.
        for day in (0..146_097 * 2).step_by(7) {
            let ms = day * 86_400_000 + 45_296_789;
            assert_eq!(parse_rfc3339(&format_rfc3339(ms)), Some(ms), "day {day}");
        }
    }

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        // Each value as the first of two fields, through the export's own writer.
        let field = |v: &str| {
            let mut w = csv_writer(64);
            write_row(&mut w, [v, "end"]).unwrap();
            let row = String::from_utf8(w.into_inner().unwrap()).unwrap();
            row.strip_suffix(",end\r\n").unwrap().to_owned()
        };
        assert_eq!(field("plain"), "plain");
        assert_eq!(field(""), "");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field("cr\rhere"), "\"cr\rhere\"");
        assert_eq!(field("=1+2"), "\"'=1+2\"");
        assert_eq!(field("+44"), "\"'+44\"");
        assert_eq!(field("-max-duration"), "\"'-max-duration\"");
        assert_eq!(field("@SUM(A1)"), "\"'@SUM(A1)\"");
        assert_eq!(field("\tx"), "\"'\tx\"");
        assert_eq!(
            field("=HYPERLINK(\"x\",\"y\")"),
            "\"'=HYPERLINK(\"\"x\"\",\"\"y\"\")\""
        );
        assert_eq!(field("a-b=c"), "a-b=c", "only a leading sign is a formula");
        assert_eq!(
            field("O'Brien"),
            "\"O'Brien\"",
            "an apostrophe is quoted, not changed"
        );
        assert_eq!(field("1001"), "1001");
    }

    fn cdr(started_at: UnixMillis, id: &str, caller: &str, disposition: Disposition) -> CallDetail {
        CallDetail {
            id: id.into(),
            caller: caller.into(),
            callee: "2000".into(),
            started_at,
            answered_at: (disposition == Disposition::Answered).then_some(started_at + 2_000),
            ended_at: started_at + 62_000,
            duration_secs: 60,
            disposition,
            hangup_side: HangupSide::Caller,
            cause: "bye".into(),
            sip_status: 200,
            node_id: 1,
        }
    }

    /// The route of an outbound call through `carrier`.
    fn outbound(r: &CallDetail) -> CallRoute {
        CallRoute {
            cdr_key: r.key(),
            direction: Direction::Outbound,
            trunk: "carrier".into(),
            did: String::new(),
            route: "national".into(),
            dialled: "95550100".into(),
            sent: "+15550100".into(),
        }
    }

    /// The route of an inbound call on `trunk` to DID 15550100.
    fn inbound(r: &CallDetail, trunk: &str) -> CallRoute {
        CallRoute {
            cdr_key: r.key(),
            direction: Direction::Inbound,
            trunk: trunk.into(),
            did: "15550100".into(),
            route: "main".into(),
            dialled: "15550100".into(),
            sent: String::new(),
        }
    }

    fn internal(cdr: CallDetail) -> CdrRow {
        CdrRow { cdr, route: None }
    }

    #[test]
    fn csv_rows() {
        let mut unanswered = cdr(T_2026_11_28_10H, "c2", "1001", Disposition::Busy);
        unanswered.cause = "=cmd|' /C calc'!A0".into();
        unanswered.sip_status = 486;
        let denied = cdr(T_2026_11_28_10H, "c3", "1001", Disposition::Denied);
        let text = to_csv(&[
            internal(cdr(T_2026_11_28_10H, "c1", "1001", Disposition::Answered)),
            internal(unanswered),
            CdrRow {
                route: Some(outbound(&denied)),
                cdr: denied,
            },
        ])
        .unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], HEADER.trim_end());
        assert_eq!(
            lines[1],
            "c1,1001,2000,2026-11-28T10:00:00.000Z,2026-11-28T10:00:02.000Z,\
             2026-11-28T10:01:02.000Z,60,answered,caller,bye,200,1,internal,,,,,"
        );
        assert_eq!(
            lines[2],
            "c2,1001,2000,2026-11-28T10:00:00.000Z,,2026-11-28T10:01:02.000Z,60,busy,caller,\
             \"'=cmd|' /C calc'!A0\",486,1,internal,,,,,"
        );
        // A leading `+` is a formula to a spreadsheet: the sent number is defused like any field.
        assert_eq!(
            lines[3],
            "c3,1001,2000,2026-11-28T10:00:00.000Z,,2026-11-28T10:01:02.000Z,60,denied,caller,bye,\
             200,1,outbound,carrier,,national,95550100,\"'+15550100\""
        );
        assert_eq!(lines[4], "", "every row ends with CRLF");
        assert_eq!(lines.len(), 5);
        assert_eq!(to_csv(&[]).unwrap(), HEADER);
        assert_eq!(
            HEADER.trim_end().split(',').collect::<Vec<_>>(),
            CSV_COLUMNS
        );
    }

    #[test]
    fn json_rows_carry_the_route_or_say_internal() {
        let c = cdr(T_2026_11_28_10H, "c1", "1001", Disposition::Answered);
        let view = |row: CdrRow| serde_json::to_value(CdrView::from(row)).unwrap();
        let plain = view(internal(c.clone()));
        assert_eq!(plain["direction"], "internal");
        for field in ["trunk", "did", "route", "dialled", "sent"] {
            assert_eq!(
                plain[field], "",
                "{field}: empty, not null, for an internal call"
            );
        }
        assert_eq!(plain["answered_at"], T_2026_11_28_10H + 2_000);
        let routed = view(CdrRow {
            route: Some(inbound(&c, "carrier")),
            cdr: c,
        });
        assert_eq!(routed["direction"], "inbound");
        assert_eq!(routed["trunk"], "carrier");
        assert_eq!(routed["did"], "15550100");
        assert_eq!(routed["route"], "main");
        assert_eq!(routed["dialled"], "15550100");
        assert_eq!(routed["sent"], "");
        assert_eq!(routed["caller"], "1001");
    }

    fn ids(rows: &[CdrRow]) -> Vec<&str> {
        rows.iter().map(|r| r.cdr.id.as_str()).collect()
    }

    /// No call went through a trunk.
    fn no_routes(_: &str) -> Result<Option<CallRoute>, StorageError> {
        Ok(None)
    }

    /// Up to `q.page.limit` CDRs of calls between extensions.
    fn fetch_internal(
        src: &MapSource<CallDetail>,
        q: &CdrQuery,
        budget: usize,
    ) -> Result<Page<CdrRow>, StorageError> {
        fetch(src, &no_routes, q, budget)
    }

    /// Follows `next` until the end; returns every row and the number of requests.
    fn all_pages(
        src: &MapSource<CallDetail>,
        routes: RouteLookup<'_>,
        mut q: CdrQuery,
        budget: usize,
    ) -> (Vec<CdrRow>, usize) {
        let mut rows = Vec::new();
        for requests in 1..10_000 {
            let page = fetch(src, routes, &q, budget).unwrap();
            assert!(page.items.len() <= q.page.limit);
            rows.extend(page.items);
            match page.next {
                Some(next) => q.page.after = Some(next),
                None => return (rows, requests),
            }
        }
        panic!("paging does not end");
    }

    #[test]
    fn pages_follow_start_time_and_honour_bounds() {
        // Two calls share a start time; ids break the tie.
        let src = MapSource::new((0..25).map(|i| {
            cdr(
                1000 + i / 2 * 10,
                &format!("c{i:02}"),
                "1001",
                Disposition::Answered,
            )
        }));
        let q = query(&[("limit", "10")]).unwrap();
        let page = fetch_internal(&src, &q, visit_budget(10)).unwrap();
        assert_eq!(ids(&page.items)[..3], ["c00", "c01", "c02"]);
        assert_eq!(page.next, Some(CallDetail::key_for(1040, "c09")));
        assert_eq!(
            src.visited.get(),
            11,
            "an unfiltered page reads one row past the page"
        );
        let (rows, requests) = all_pages(&src, &no_routes, q, visit_budget(10));
        assert_eq!(rows.len(), 25);
        assert_eq!(requests, 3);
        assert!(
            rows.windows(2).all(|w| w[0].cdr.key() < w[1].cdr.key()),
            "no repeats, in order"
        );

        // from inclusive, to exclusive, on the start time.
        let q = query(&[("from", "1010"), ("to", "1030")]).unwrap();
        let page = fetch_internal(&src, &q, visit_budget(q.page.limit)).unwrap();
        assert_eq!(ids(&page.items), ["c02", "c03", "c04", "c05"]);
        assert_eq!(page.next, None);
        let q = query(&[("from", "1030"), ("to", "1030")]).unwrap();
        assert!(fetch_internal(&src, &q, 100).unwrap().items.is_empty());
        // A cursor before `from` does not widen the range.
        let mut q = query(&[("from", "1100")]).unwrap();
        q.page.after = Some(CallDetail::key_for(1000, "c00"));
        assert_eq!(
            ids(&fetch_internal(&src, &q, 100).unwrap().items),
            ["c20", "c21", "c22", "c23", "c24"]
        );
    }

    #[test]
    fn filters_match_caller_or_callee_and_disposition() {
        let mut to_1001 = cdr(3, "c3", "1002", Disposition::Busy);
        to_1001.callee = "1001".into();
        let src = MapSource::new([
            cdr(1, "c1", "1001", Disposition::Answered),
            cdr(2, "c2", "1002", Disposition::Answered),
            to_1001,
            cdr(4, "c4", "10011", Disposition::Busy),
        ]);
        let get = |pairs: &[(&str, &str)]| {
            let q = query(pairs).unwrap();
            ids(&fetch_internal(&src, &q, 100).unwrap().items).join(" ")
        };
        assert_eq!(get(&[("extension", "1001")]), "c1 c3");
        assert_eq!(get(&[("disposition", "busy")]), "c3 c4");
        assert_eq!(get(&[("extension", "1001"), ("disposition", "busy")]), "c3");
        assert_eq!(get(&[("extension", "9")]), "");
    }

    #[test]
    fn a_filter_matching_little_stops_at_the_budget_with_a_cursor() {
        // 5 000 rows; only every 1 000th is busy.
        let src = MapSource::new((0..5_000).map(|i| {
            let d = if i % 1000 == 999 {
                Disposition::Busy
            } else {
                Disposition::Answered
            };
            cdr(i, &format!("c{i}"), "1001", d)
        }));
        let q = query(&[("disposition", "busy"), ("limit", "10")]).unwrap();
        let page = fetch_internal(&src, &q, 1500).unwrap();
        assert_eq!(ids(&page.items), ["c999"], "fewer than the limit");
        assert_eq!(
            page.next,
            Some(CallDetail::key_for(1499, "c1499")),
            "but a cursor"
        );
        assert_eq!(src.visited.get(), 1500);
        let (rows, requests) = all_pages(&src, &no_routes, q, 1500);
        assert_eq!(ids(&rows), ["c999", "c1999", "c2999", "c3999", "c4999"]);
        assert_eq!(requests, 4);

        let q = query(&[("disposition", "failed")]).unwrap();
        let src = MapSource::new((0..300_000).map(|i| cdr(i, "x", "1001", Disposition::Answered)));
        let page = fetch_internal(&src, &q, visit_budget(q.page.limit)).unwrap();
        assert!(page.items.is_empty());
        assert!(page.next.is_some());
        assert_eq!(
            src.visited.get(),
            MIN_VISIT,
            "a fruitless filter reads a bounded number of rows"
        );
    }

    /// CDRs `c0`…`c{n-1}`, one a millisecond, with the routes `route` gives (by index).
    fn routed(
        n: u64,
        route: impl Fn(u64, &CallDetail) -> Option<CallRoute>,
    ) -> (MapSource<CallDetail>, BTreeMap<String, CallRoute>) {
        let rows: Vec<CallDetail> = (0..n)
            .map(|i| {
                let d = if i % 5 == 4 {
                    Disposition::Denied
                } else {
                    Disposition::Answered
                };
                cdr(
                    i,
                    &format!("c{i}"),
                    if i % 2 == 0 { "1001" } else { "1002" },
                    d,
                )
            })
            .collect();
        let routes = rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| route(i as u64, r))
            .map(|r| (r.cdr_key.clone(), r))
            .collect();
        (MapSource::new(rows), routes)
    }

    #[test]
    fn direction_and_trunk_filters_compose_with_the_others() {
        // c0, c3, c6, …: outbound on carrier; c1, c4, …: inbound on `backup`; c2, c5, …: internal.
        let (src, routes) = routed(12, |i, r| match i % 3 {
            0 => Some(outbound(r)),
            1 => Some(inbound(r, "backup")),
            _ => None,
        });
        let reads = Cell::new(0);
        let lookup = |k: &str| -> Result<_, StorageError> {
            reads.set(reads.get() + 1);
            Ok(routes.get(k).cloned())
        };
        let get = |pairs: &[(&str, &str)]| {
            let q = query(pairs).unwrap();
            let page = fetch(&src, &lookup, &q, 100).unwrap();
            for row in &page.items {
                assert_eq!(
                    row.route,
                    routes.get(&row.cdr.key()).cloned(),
                    "its own route"
                );
            }
            ids(&page.items).join(" ")
        };
        assert_eq!(get(&[("direction", "outbound")]), "c0 c3 c6 c9");
        assert_eq!(get(&[("direction", "inbound")]), "c1 c4 c7 c10");
        assert_eq!(get(&[("direction", "internal")]), "c2 c5 c8 c11");
        assert_eq!(get(&[("trunk", "carrier")]), "c0 c3 c6 c9");
        assert_eq!(get(&[("trunk", "backup")]), "c1 c4 c7 c10");
        assert_eq!(get(&[("trunk", "carrie")]), "", "exact names only");
        assert_eq!(get(&[("trunk", "carrier"), ("direction", "inbound")]), "");
        assert_eq!(
            get(&[("direction", "outbound"), ("extension", "1001")]),
            "c0 c6"
        );
        assert_eq!(get(&[("disposition", "denied")]), "c4 c9");
        assert_eq!(
            get(&[("disposition", "denied"), ("direction", "outbound")]),
            "c9"
        );
        assert_eq!(
            get(&[("trunk", "backup"), ("from", "2"), ("to", "8")]),
            "c4 c7"
        );
        // Without a route filter each row of the page reads its route once; with one, each row the
        // CDR's own filters keep is read once, and the page reuses those reads.
        reads.set(0);
        assert_eq!(get(&[]).split(' ').count(), 12);
        assert_eq!(reads.get(), 12);
        reads.set(0);
        assert_eq!(
            get(&[("direction", "inbound"), ("extension", "1002")]),
            "c1 c7"
        );
        assert_eq!(reads.get(), 6, "only the six calls of 1002 are looked up");
    }

    #[test]
    fn route_filters_page_and_stop_at_the_budget_like_the_others() {
        // 3 000 calls; every 250th went out through carrier.
        let (src, routes) = routed(3_000, |i, r| (i % 250 == 249).then(|| outbound(r)));
        let lookup = |k: &str| -> Result<_, StorageError> { Ok(routes.get(k).cloned()) };
        let q = query(&[("direction", "outbound"), ("limit", "2")]).unwrap();
        let page = fetch(&src, &lookup, &q, 1_000).unwrap();
        assert_eq!(ids(&page.items), ["c249", "c499"]);
        assert_eq!(
            page.next,
            Some(CallDetail::key_for(499, "c499")),
            "a full page"
        );
        let page = fetch(&src, &lookup, &query(&[("trunk", "carrier")]).unwrap(), 600).unwrap();
        assert_eq!(ids(&page.items), ["c249", "c499"], "fewer than the limit");
        assert_eq!(
            page.next,
            Some(CallDetail::key_for(599, "c599")),
            "but a cursor: the last row looked at"
        );
        // Following `next` finds every one once, in order, each request within its budget.
        let (rows, _) = all_pages(&src, &lookup, q, 600);
        let want: Vec<String> = (1..=12).map(|k| format!("c{}", k * 250 - 1)).collect();
        assert_eq!(ids(&rows), want);
        assert!(rows.iter().all(|r| r.route.is_some()));
        // Internal calls page the same way.
        let q = query(&[("direction", "internal"), ("limit", "1000")]).unwrap();
        let (rows, _) = all_pages(&src, &lookup, q, 700);
        assert_eq!(rows.len(), 3_000 - 12);
        assert!(rows.iter().all(|r| r.route.is_none()));
    }

    #[test]
    fn a_failed_route_read_fails_the_request() {
        let (src, _) = routed(3, |_, _| None);
        let broken = |_: &str| -> Result<Option<CallRoute>, StorageError> {
            Err(StorageError::Corrupt("bad route".into()))
        };
        for pairs in [&[][..], &[("direction", "internal")][..]] {
            let q = query(pairs).unwrap();
            assert!(
                matches!(fetch(&src, &broken, &q, 100), Err(StorageError::Corrupt(_))),
                "{pairs:?}"
            );
        }
    }

    /// `n` CDRs of calls between other extensions, one a millisecond, and `mine` calls of 1001
    /// (every other one to it, every third one busy) spread evenly among them.
    fn haystack(n: u64, mine: u64) -> Vec<CallDetail> {
        let every = (n + mine) / mine;
        (0..n + mine)
            .map(|i| {
                if i % every != every - 1 {
                    return cdr(i, &format!("x{i}"), "3000", Disposition::Answered);
                }
                let d = if i / every % 3 == 2 {
                    Disposition::Busy
                } else {
                    Disposition::Answered
                };
                let mut c = cdr(i, &format!("m{i}"), "1001", d);
                if i / every % 2 == 1 {
                    (c.caller, c.callee) = (c.callee, c.caller);
                }
                c
            })
            .collect()
    }

    /// The table, its index (as `EndCall` writes it) and a read of one CDR by key.
    struct Indexed {
        table: MapSource<CallDetail>,
        entries: MapSource<CdrIndexEntry>,
        by_key: BTreeMap<String, CallDetail>,
    }

    impl Indexed {
        fn new(rows: Vec<CallDetail>) -> Self {
            Self {
                entries: MapSource::new(rows.iter().flat_map(CdrIndexEntry::of)),
                by_key: rows.iter().map(|r| (r.key(), r.clone())).collect(),
                table: MapSource::new(rows),
            }
        }

        /// A page as `list` reads it: through the index when `complete`.
        fn fetch(&self, q: &CdrQuery, complete: bool) -> Page<CdrRow> {
            let cdr = |k: &str| -> Result<_, StorageError> { Ok(self.by_key.get(k).cloned()) };
            let index = complete.then_some(CdrIndex {
                entries: &self.entries,
                cdr: &cdr,
            });
            fetch_rows(
                &self.table,
                index,
                &no_routes,
                q,
                visit_budget(q.page.limit),
            )
            .unwrap()
        }

        fn reset(&self) {
            self.table.visited.set(0);
            self.entries.visited.set(0);
        }
    }

    #[test]
    fn a_complete_index_fills_an_extension_page_among_many_other_calls() {
        let src = Indexed::new(haystack(20_000, 100));
        let mine: Vec<String> = src
            .by_key
            .values()
            .filter(|c| c.id.starts_with('m'))
            .map(|c| c.id.clone())
            .collect();
        assert_eq!(mine.len(), 100);
        for format in ["json", "csv"] {
            src.reset();
            let q = query(&[("extension", "1001"), ("limit", "100"), ("format", format)]).unwrap();
            let page = src.fetch(&q, true);
            assert_eq!(
                ids(&page.items),
                mine,
                "{format}: all 100, in start-time order"
            );
            assert_eq!(page.next, None, "{format}: nothing more");
            assert_eq!(
                src.entries.visited.get(),
                100,
                "only 1001's entries are visited"
            );
            assert_eq!(src.table.visited.get(), 0, "the table is not scanned");
        }
        // Smaller pages: each full, the cursor a CDR key as before, every call once.
        let mut q = query(&[("extension", "1001"), ("limit", "30")]).unwrap();
        let mut seen = Vec::new();
        for want in [30, 30, 30, 10] {
            let page = src.fetch(&q, true);
            assert_eq!(page.items.len(), want);
            seen.extend(ids(&page.items).into_iter().map(str::to_owned));
            if let Some(next) = &page.next {
                assert!(paging::is_time_key(next), "{next}");
                assert_eq!(*next, page.items.last().unwrap().cdr.key());
            }
            q.page.after = page.next;
        }
        assert_eq!(q.page.after, None);
        assert_eq!(seen, mine);
        // The other filters still apply to the extension's calls.
        let get = |pairs: &[(&str, &str)]| {
            let q = query(pairs).unwrap();
            let page = src.fetch(&q, true);
            let rows: Vec<CallDetail> = page.items.into_iter().map(|r| r.cdr).collect();
            let ext = q.extension.unwrap();
            assert!(
                rows.iter().all(|c| c.caller == ext || c.callee == ext),
                "{pairs:?}"
            );
            rows
        };
        let busy = get(&[("extension", "1001"), ("disposition", "busy")]);
        assert_eq!(busy.len(), 33);
        assert!(busy.iter().all(|c| c.disposition == Disposition::Busy));
        let window = get(&[("extension", "1001"), ("from", "5000"), ("to", "10000")]);
        assert_eq!(window.len(), 25);
        assert!(
            window
                .iter()
                .all(|c| (5000..10_000).contains(&c.started_at))
        );
        assert!(get(&[("extension", "3000"), ("limit", "1000")]).len() == 1000);
        assert!(
            get(&[("extension", "100")]).is_empty(),
            "a prefix of 1001 is not 1001"
        );
        assert!(get(&[("extension", "10011")]).is_empty());
    }

    #[test]
    fn until_the_index_is_complete_an_extension_filter_scans_the_table() {
        let src = Indexed::new(haystack(20_000, 100));
        let q = query(&[("extension", "1001"), ("limit", "100")]).unwrap();
        let page = src.fetch(&q, false);
        assert_eq!(src.entries.visited.get(), 0, "the index is not read");
        assert_eq!(
            src.table.visited.get(),
            MIN_VISIT,
            "one budget of the table"
        );
        // Correct but partial: the calls of the first 10 000 rows, and a cursor to go on with.
        assert_eq!(page.items.len(), 49);
        assert!(page.items.iter().all(|r| r.cdr.id.starts_with('m')));
        let next = page.next.clone().unwrap();
        // The cursor means the same on both paths: once the index is complete, paging goes on
        // where the scan stopped, with nothing repeated or skipped.
        let mut q = q;
        q.page.after = Some(next);
        let rest = src.fetch(&q, true);
        assert_eq!(rest.items.len(), 51);
        assert_eq!(rest.next, None);
        let all: Vec<&str> = ids(&page.items)
            .into_iter()
            .chain(ids(&rest.items))
            .collect();
        let mine: Vec<&str> = src
            .by_key
            .values()
            .filter(|c| c.id.starts_with('m'))
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(all, mine);
        // Without an extension the index is never used.
        src.reset();
        let page = src.fetch(&query(&[("disposition", "busy")]).unwrap(), true);
        assert_eq!(src.entries.visited.get(), 0);
        assert_eq!(src.table.visited.get(), MIN_VISIT);
        assert_eq!(
            page.items.len(),
            16,
            "the busy calls of the first 10 000 rows"
        );
    }

    #[test]
    fn a_failed_cdr_read_through_the_index_fails_the_request() {
        let src = Indexed::new(haystack(100, 10));
        let broken = |_: &str| -> Result<Option<CallDetail>, StorageError> {
            Err(StorageError::Corrupt("bad cdr".into()))
        };
        let index = CdrIndex {
            entries: &src.entries,
            cdr: &broken,
        };
        let q = query(&[("extension", "1001")]).unwrap();
        let got = fetch_rows(&src.table, Some(index), &no_routes, &q, 100);
        assert!(matches!(got, Err(StorageError::Corrupt(_))));
    }

    #[test]
    fn budgets() {
        assert_eq!(visit_budget(1), MIN_VISIT);
        assert_eq!(visit_budget(1000), 10_010);
        assert_eq!(visit_budget(100_000), MAX_VISIT);
        assert!(
            visit_budget(CSV_LIMITS.max) > CSV_LIMITS.max,
            "a full unfiltered export fits"
        );
    }
}
