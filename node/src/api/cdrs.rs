//! `/api/v1/cdrs`: call detail records by start time, filtered and paged, as JSON or CSV.
//!
//! CDR keys are `{started_at:020}-{id}`, so a time range is a key range and the paging cursor is simply
//! the key of the last record of the previous page. The work per request is bounded: at most
//! [`visit_budget`] rows are read, and when the budget runs out before the page is full the answer
//! still carries a cursor, so a filter that matches nothing costs a bounded amount per request.

use axum::Json;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use storage::model::{CallDetail, Disposition, UnixMillis};
use storage::{NodeId, Record as _, StateReader, StorageError};

use super::AppState;
use super::auth::Admin;
use super::error::ApiError;

/// Longest query string accepted, in bytes (as sent, before percent-decoding).
pub(crate) const MAX_QUERY_BYTES: usize = 2048;
const JSON_DEFAULT_LIMIT: usize = 100;
const JSON_MAX_LIMIT: usize = 1000;
/// CSV exports default to, and are capped at, this many rows.
const CSV_MAX_LIMIT: usize = 100_000;
/// Rows visited per request: ten per row asked for, within these bounds.
const MIN_VISIT: usize = 10_000;
const MAX_VISIT: usize = 200_000;
/// Rows read per `scan_range` call when a filter is set (a page without filters reads exactly what it needs).
const MIN_CHUNK: usize = 1024;
const MAX_EXTENSION_LEN: usize = 32;
/// Longest call id a cursor may carry.
const MAX_CURSOR_ID_LEN: usize = 256;
/// The last instant RFC 3339 can write, 9999-12-31T23:59:59.999Z.
const MAX_MILLIS: UnixMillis = 253_402_300_799_999;
/// Sorts after every CDR key (they start with digits): the end of the table.
const END_OF_TABLE: &str = ":";
const MS_PER_DAY: i64 = 86_400_000;
/// Days from 0000-03-01 to 1970-01-01 in the proleptic Gregorian calendar.
const UNIX_EPOCH_DAYS: i64 = 719_468;
const DAYS_PER_400_YEARS: i64 = 146_097;

pub(crate) const CSV_HEADER: &str = "id,caller,callee,started_at,answered_at,ended_at,duration_secs,disposition,hangup_side,cause,sip_status,node_id\r\n";

/// The query string as sent. Every field is text so that each gets its own clear error message.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCdrQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub extension: Option<String>,
    pub disposition: Option<String>,
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
    pub limit: usize,
    /// Key of the last record of the previous page.
    pub after: Option<String>,
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
        let (default_limit, max_limit) = match format {
            Format::Json => (JSON_DEFAULT_LIMIT, JSON_MAX_LIMIT),
            Format::Csv => (CSV_MAX_LIMIT, CSV_MAX_LIMIT),
        };
        let limit = match raw.limit.as_deref() {
            None => default_limit,
            Some(s) => s
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=max_limit).contains(n))
                .ok_or_else(|| {
                    bad(format!(
                        "limit must be 1 to {max_limit} for {}",
                        match format {
                            Format::Json => "json",
                            Format::Csv => "csv",
                        }
                    ))
                })?,
        };
        if let Some(after) = &raw.after {
            validate_cursor(after)?;
        }
        Ok(Self {
            from,
            to,
            extension: raw.extension,
            disposition,
            limit,
            after: raw.after,
            format,
        })
    }

    /// The first key to read: the later of `from` and just past the cursor.
    fn start_key(&self) -> String {
        let from = self.from.map(|f| format!("{f:020}")).unwrap_or_default();
        match &self.after {
            // NUL is the least byte: `{after}\0` is the first key after `after`.
            Some(after) => from.max(format!("{after}\u{0}")),
            None => from,
        }
    }

    /// The first key not to read: every record that started at `to` or later sorts at or after it.
    fn end_key(&self) -> String {
        self.to
            .map_or_else(|| END_OF_TABLE.to_owned(), |t| format!("{t:020}"))
    }

    fn matches(&self, r: &CallDetail) -> bool {
        self.extension
            .as_ref()
            .is_none_or(|e| r.caller == *e || r.callee == *e)
            && self.disposition.is_none_or(|d| r.disposition == d)
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

/// A cursor is a CDR key: twenty digits, `-`, and a call id.
fn validate_cursor(after: &str) -> Result<(), ApiError> {
    let b = after.as_bytes();
    let ok = b.len() > 21
        && b.len() <= 21 + MAX_CURSOR_ID_LEN
        && b[..20].iter().all(u8::is_ascii_digit)
        && b[20] == b'-'
        && !after.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(bad("after must be the next cursor of a previous page"))
    }
}

/// Rows a request may visit for a page of `limit`.
pub(crate) fn visit_budget(limit: usize) -> usize {
    limit
        .saturating_add(1)
        .saturating_mul(10)
        .clamp(MIN_VISIT, MAX_VISIT)
}

/// The query parameters of `/cdrs`, checked; every rejection is a JSON [`ApiError`].
pub(crate) struct CdrParams(pub CdrQuery);

impl<S: Send + Sync> FromRequestParts<S> for CdrParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if parts.uri.query().is_some_and(|q| q.len() > MAX_QUERY_BYTES) {
            return Err(bad(format!(
                "query string longer than {MAX_QUERY_BYTES} bytes"
            )));
        }
        let Query(raw) = Query::<RawCdrQuery>::try_from_uri(&parts.uri)
            .map_err(|e| bad(format!("invalid query: {}", e.body_text())))?;
        CdrQuery::parse(raw).map(Self)
    }
}

/// Where CDRs are read from: the replicated table, or a map in tests.
trait CdrSource {
    /// [`StateReader::scan_range`] over the CDR table.
    fn scan(
        &self,
        from: &str,
        to: &str,
        max_rows: usize,
        keep: &mut dyn FnMut(&CallDetail) -> bool,
    ) -> Result<(Vec<CallDetail>, Option<String>), StorageError>;
}

impl CdrSource for StateReader {
    fn scan(
        &self,
        from: &str,
        to: &str,
        max_rows: usize,
        keep: &mut dyn FnMut(&CallDetail) -> bool,
    ) -> Result<(Vec<CallDetail>, Option<String>), StorageError> {
        self.scan_range::<CallDetail>(from, to, max_rows, keep)
    }
}

#[derive(Debug)]
struct Page {
    rows: Vec<CallDetail>,
    /// Pass as `after` to continue; `None` when the range is exhausted.
    next: Option<String>,
}

/// Up to `q.limit` matching records in key order, visiting at most `budget` rows.
fn fetch(src: &dyn CdrSource, q: &CdrQuery, budget: usize) -> Result<Page, StorageError> {
    let want = q.limit.saturating_add(1);
    let filtered = q.extension.is_some() || q.disposition.is_some();
    let to = q.end_key();
    let mut from = q.start_key();
    let mut left = budget;
    let mut rows = Vec::new();
    let mut last_visited: Option<String> = None;
    let mut exhausted = false;
    while rows.len() < want && left > 0 {
        let need = want - rows.len();
        let chunk = if filtered { need.max(MIN_CHUNK) } else { need }.min(left);
        let mut keep = |r: &CallDetail| {
            last_visited = Some(r.key());
            q.matches(r)
        };
        let (found, resume) = src.scan(&from, &to, chunk, &mut keep)?;
        rows.extend(found);
        match resume {
            Some(key) => {
                from = key;
                left -= chunk;
            }
            None => {
                exhausted = true;
                break;
            }
        }
    }
    let next = if rows.len() > q.limit {
        rows.truncate(q.limit);
        rows.last().map(CallDetail::key)
    } else if exhausted {
        None
    } else {
        // The budget ran out: resume after the last row looked at, matched or not.
        last_visited
    };
    Ok(Page { rows, next })
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
}

impl From<CallDetail> for CdrView {
    fn from(c: CallDetail) -> Self {
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
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct CdrPage {
    pub cdrs: Vec<CdrView>,
    /// Pass as `after` for the next page; `null` when there is no more.
    pub next: Option<String>,
}

/// Call detail records in start-time order.
///
/// Query (all optional): `from` (inclusive) and `to` (exclusive) on the start time, each an RFC 3339
/// time (`2026-11-28T10:00:00Z`; a space where the offset's `+` was, as an unencoded `+` decodes, is
/// read as `+`) or Unix milliseconds; `extension` (caller or callee, digits); `disposition`
/// (`answered`, `busy`, `no_answer`, `cancelled`, `unavailable`, `not_found`, `failed`); `limit`
/// (JSON: default 100, at most 1000; CSV: default and at most 100 000); `after` (the `next` cursor of
/// the previous page); `format` (`json` or `csv`). Unknown parameters, and query strings over 2 KiB,
/// are refused with 400.
///
/// JSON: `{"cdrs": [{id, caller, callee, started_at, answered_at, ended_at, duration_secs,
/// disposition, hangup_side, cause, sip_status, node_id}], "next": cursor | null}`, times in Unix
/// milliseconds like the rest of the API. CSV: an attachment with a header row, RFC 3339 UTC times
/// with milliseconds (what spreadsheets and people read), empty `answered_at` when unanswered; the
/// cursor, when there is more, is in the `X-Next-Cursor` header.
///
/// A page may hold fewer than `limit` records and still carry a cursor: each request visits a bounded
/// number of records ([`visit_budget`]), and a selective filter may not fill the page within it.
pub(crate) async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    CdrParams(q): CdrParams,
) -> Result<Response, ApiError> {
    state.cluster.linearizable_barrier().await?;
    let reader = state.cluster.reader().clone();
    let (body, next) = tokio::task::spawn_blocking(move || -> Result<_, StorageError> {
        let page = fetch(&reader, &q, visit_budget(q.limit))?;
        let body = match q.format {
            Format::Json => Body::Json(CdrPage {
                cdrs: page.rows.into_iter().map(CdrView::from).collect(),
                next: page.next.clone(),
            }),
            Format::Csv => Body::Csv(to_csv(&page.rows)),
        };
        Ok((body, page.next))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    match body {
        Body::Json(page) => Ok(Json(page).into_response()),
        Body::Csv(text) => {
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
                let value = HeaderValue::from_str(&cursor).map_err(|_| {
                    ApiError::Internal(format!("cursor {cursor:?} cannot go in a header"))
                })?;
                resp.headers_mut().insert("x-next-cursor", value);
            }
            Ok(resp)
        }
    }
}

enum Body {
    Json(CdrPage),
    Csv(String),
}

/// The CSV export: header row, CRLF line ends, RFC 4180 quoting, formula prefixes neutralised.
pub(crate) fn to_csv(rows: &[CallDetail]) -> String {
    let mut out = String::with_capacity(CSV_HEADER.len() + rows.len() * 160);
    out.push_str(CSV_HEADER);
    for r in rows {
        let answered = r.answered_at.map(format_rfc3339).unwrap_or_default();
        let fields: [&str; 12] = [
            &r.id,
            &r.caller,
            &r.callee,
            &format_rfc3339(r.started_at),
            &answered,
            &format_rfc3339(r.ended_at),
            &r.duration_secs.to_string(),
            r.disposition.as_str(),
            r.hangup_side.as_str(),
            &r.cause,
            &r.sip_status.to_string(),
            &r.node_id.to_string(),
        ];
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_csv_field(&mut out, f);
        }
        out.push_str("\r\n");
    }
    out
}

/// Appends one field. Fields with a comma, quote, CR or LF are quoted, quotes doubled (RFC 4180). A
/// field a spreadsheet would read as a formula (leading `=`, `+`, `-`, `@`, tab or CR, as OWASP lists)
/// is quoted and prefixed with `'` so it stays text.
pub(crate) fn push_csv_field(out: &mut String, value: &str) {
    let formula = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if !formula && !value.contains([',', '"', '\r', '\n']) {
        out.push_str(value);
        return;
    }
    out.push('"');
    if formula {
        out.push('\'');
    }
    for c in value.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
}

/// `from`/`to`: Unix milliseconds (digits only) or an RFC 3339 time.
fn parse_time(name: &str, s: &str) -> Result<UnixMillis, ApiError> {
    let parsed = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<UnixMillis>().ok().filter(|ms| *ms <= MAX_MILLIS)
    } else {
        parse_rfc3339(s)
    };
    parsed.ok_or_else(|| {
        bad(format!(
            "{name} must be an RFC 3339 time from 1970 on, such as 2026-11-28T10:00:00Z, or Unix milliseconds"
        ))
    })
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` to Unix milliseconds (fraction truncated to
/// milliseconds). `None` when malformed, out of range, or before 1970.
pub(crate) fn parse_rfc3339(s: &str) -> Option<UnixMillis> {
    let b = s.as_bytes();
    if b.len() < 20 || s.len() > 40 {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        digits.iter().try_fold(0_i64, |acc, d| {
            d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
        })
    };
    let sep = |i: usize, allowed: &[u8]| b.get(i).is_some_and(|c| allowed.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &b[19..];
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        for (i, d) in frac[..n].iter().take(3).enumerate() {
            millis += i64::from(d - b'0') * [100, 10, 1][i];
        }
        rest = &frac[n..];
    }
    let offset_minutes = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-' | b' '), h1, h2, b':', m1, m2] => {
            let two = |a: u8, b: u8| {
                (a.is_ascii_digit() && b.is_ascii_digit())
                    .then(|| i64::from(a - b'0') * 10 + i64::from(b - b'0'))
            };
            let (h, m) = (two(*h1, *h2)?, two(*m1, *m2)?);
            if h > 23 || m > 59 {
                return None;
            }
            if *sign == b'-' {
                -(h * 60 + m)
            } else {
                h * 60 + m
            }
        }
        _ => return None,
    };
    let ms = days_from_civil(year, month, day) * MS_PER_DAY
        + ((hour * 60 + minute - offset_minutes) * 60 + second) * 1000
        + millis;
    UnixMillis::try_from(ms).ok()
}

/// `2026-11-28T10:00:00.000Z`: RFC 3339, UTC, always with milliseconds.
pub(crate) fn format_rfc3339(ms: UnixMillis) -> String {
    let secs = ms / 1000;
    let day_secs = secs % 86_400;
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        day_secs / 3600,
        day_secs % 3600 / 60,
        day_secs % 60,
        ms % 1000
    )
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`), year ≥ 0.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * DAYS_PER_400_YEARS + doe - UNIX_EPOCH_DAYS
}

/// The date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`), for days ≥ 0.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + UNIX_EPOCH_DAYS;
    let era = z.div_euclid(DAYS_PER_400_YEARS);
    let doe = z.rem_euclid(DAYS_PER_400_YEARS);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use storage::model::HangupSide;

    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Result<CdrQuery, ApiError> {
        let mut raw = RawCdrQuery::default();
        for (k, v) in pairs {
            let v = Some((*v).to_owned());
            match *k {
                "from" => raw.from = v,
                "to" => raw.to = v,
                "extension" => raw.extension = v,
                "disposition" => raw.disposition = v,
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
            (q.limit, q.format, q.from, q.to),
            (100, Format::Json, None, None)
        );
        assert_eq!(query(&[("format", "csv")]).unwrap().limit, 100_000);
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
        assert_eq!(q.limit, 1000);
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
        refused(&[("extension", "10a1")], "extension must be 1 to 32 digits");
        refused(&[("extension", "")], "extension");
        refused(&[("extension", &"1".repeat(33))], "extension");
        assert!(query(&[("extension", &"1".repeat(32))]).is_ok());
        refused(&[("limit", "0")], "limit must be 1 to 1000 for json");
        refused(&[("limit", "1001")], "limit must be 1 to 1000");
        refused(&[("limit", "5000")], "limit");
        refused(&[("limit", "-1")], "limit");
        refused(&[("limit", "ten")], "limit");
        refused(
            &[("format", "csv"), ("limit", "100001")],
            "limit must be 1 to 100000 for csv",
        );
        refused(&[("format", "csv"), ("limit", "0")], "limit");
        refused(&[("format", "xml")], "format must be json or csv");
        refused(&[("after", "x")], "after must be");
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
        let field = |v: &str| {
            let mut s = String::new();
            push_csv_field(&mut s, v);
            s
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

    #[test]
    fn csv_rows() {
        let mut unanswered = cdr(T_2026_11_28_10H, "c2", "1001", Disposition::Busy);
        unanswered.cause = "=cmd|' /C calc'!A0".into();
        unanswered.sip_status = 486;
        let text = to_csv(&[
            cdr(T_2026_11_28_10H, "c1", "1001", Disposition::Answered),
            unanswered,
        ]);
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], CSV_HEADER.trim_end());
        assert_eq!(
            lines[1],
            "c1,1001,2000,2026-11-28T10:00:00.000Z,2026-11-28T10:00:02.000Z,\
             2026-11-28T10:01:02.000Z,60,answered,caller,bye,200,1"
        );
        assert_eq!(
            lines[2],
            "c2,1001,2000,2026-11-28T10:00:00.000Z,,2026-11-28T10:01:02.000Z,60,busy,caller,\
             \"'=cmd|' /C calc'!A0\",486,1"
        );
        assert_eq!(lines[3], "", "every row ends with CRLF");
        assert_eq!(lines.len(), 4);
        assert_eq!(to_csv(&[]), CSV_HEADER);
    }

    /// `scan_range`'s contract over a map.
    struct MapSource {
        rows: BTreeMap<String, CallDetail>,
        visited: std::cell::Cell<usize>,
    }

    impl MapSource {
        fn new(rows: impl IntoIterator<Item = CallDetail>) -> Self {
            Self {
                rows: rows.into_iter().map(|r| (r.key(), r)).collect(),
                visited: std::cell::Cell::new(0),
            }
        }
    }

    impl CdrSource for MapSource {
        fn scan(
            &self,
            from: &str,
            to: &str,
            max_rows: usize,
            keep: &mut dyn FnMut(&CallDetail) -> bool,
        ) -> Result<(Vec<CallDetail>, Option<String>), StorageError> {
            let mut out = Vec::new();
            for (n, (k, r)) in self
                .rows
                .range(from.to_owned()..)
                .take_while(|(k, _)| k.as_str() < to)
                .enumerate()
            {
                if n >= max_rows {
                    return Ok((out, Some(k.clone())));
                }
                self.visited.set(self.visited.get() + 1);
                if keep(r) {
                    out.push(r.clone());
                }
            }
            Ok((out, None))
        }
    }

    fn ids(rows: &[CallDetail]) -> Vec<&str> {
        rows.iter().map(|r| r.id.as_str()).collect()
    }

    /// Follows `next` until the end; returns every row and the number of requests.
    fn all_pages(src: &MapSource, mut q: CdrQuery, budget: usize) -> (Vec<CallDetail>, usize) {
        let mut rows = Vec::new();
        for requests in 1..10_000 {
            let page = fetch(src, &q, budget).unwrap();
            assert!(page.rows.len() <= q.limit);
            rows.extend(page.rows);
            match page.next {
                Some(next) => q.after = Some(next),
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
        let page = fetch(&src, &q, visit_budget(10)).unwrap();
        assert_eq!(ids(&page.rows)[..3], ["c00", "c01", "c02"]);
        assert_eq!(page.next, Some(CallDetail::key_for(1040, "c09")));
        assert_eq!(
            src.visited.get(),
            11,
            "an unfiltered page reads one row past the page"
        );
        let (rows, requests) = all_pages(&src, q, visit_budget(10));
        assert_eq!(rows.len(), 25);
        assert_eq!(requests, 3);
        assert!(
            rows.windows(2).all(|w| w[0].key() < w[1].key()),
            "no repeats, in order"
        );

        // from inclusive, to exclusive, on the start time.
        let q = query(&[("from", "1010"), ("to", "1030")]).unwrap();
        let page = fetch(&src, &q, visit_budget(q.limit)).unwrap();
        assert_eq!(ids(&page.rows), ["c02", "c03", "c04", "c05"]);
        assert_eq!(page.next, None);
        let q = query(&[("from", "1030"), ("to", "1030")]).unwrap();
        assert!(fetch(&src, &q, 100).unwrap().rows.is_empty());
        // A cursor before `from` does not widen the range.
        let mut q = query(&[("from", "1100")]).unwrap();
        q.after = Some(CallDetail::key_for(1000, "c00"));
        assert_eq!(
            ids(&fetch(&src, &q, 100).unwrap().rows),
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
            ids(&fetch(&src, &q, 100).unwrap().rows).join(" ")
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
        let page = fetch(&src, &q, 1500).unwrap();
        assert_eq!(ids(&page.rows), ["c999"], "fewer than the limit");
        assert_eq!(
            page.next,
            Some(CallDetail::key_for(1499, "c1499")),
            "but a cursor"
        );
        assert_eq!(src.visited.get(), 1500);
        let (rows, requests) = all_pages(&src, q, 1500);
        assert_eq!(ids(&rows), ["c999", "c1999", "c2999", "c3999", "c4999"]);
        assert_eq!(requests, 4);

        let q = query(&[("disposition", "failed")]).unwrap();
        let src = MapSource::new((0..300_000).map(|i| cdr(i, "x", "1001", Disposition::Answered)));
        let page = fetch(&src, &q, visit_budget(q.limit)).unwrap();
        assert!(page.rows.is_empty());
        assert!(page.next.is_some());
        assert_eq!(
            src.visited.get(),
            MIN_VISIT,
            "a fruitless filter reads a bounded number of rows"
        );
    }

    #[test]
    fn budgets() {
        assert_eq!(visit_budget(1), MIN_VISIT);
        assert_eq!(visit_budget(1000), 10_010);
        assert_eq!(visit_budget(100_000), MAX_VISIT);
        assert!(
            visit_budget(CSV_MAX_LIMIT) > CSV_MAX_LIMIT,
            "a full unfiltered export fits"
        );
    }
}
