//! Paging shared by the list endpoints (`/cdrs`, `/events`, `/audit`, `/extensions`).
//!
//! The contract: `after` is the cursor (the `next` of the previous page; absent for the first page),
//! `limit` the page size (default [`LIMITS`]`.default`, at most [`LIMITS`]`.max`), and the answer's `next`
//! the cursor of the following page, absent on the last page. A cursor is the key of the last record
//! the previous page looked at, so pages never repeat or skip a record. Bad values are a JSON 400 that
//! names the parameter.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use storage::{Record, StateReader, StorageError};

use super::error::ApiError;

/// The cursor's query parameter.
pub(crate) const CURSOR: &str = "after";
/// Longest query string a list endpoint accepts, in bytes (as sent, before percent-decoding).
pub(crate) const MAX_QUERY_BYTES: usize = 2048;
/// Rows read per `scan_range` call when a filter is set (an unfiltered page reads exactly what it needs).
const MIN_CHUNK: usize = 1024;
/// Longest id after the time in a time-keyed cursor (call ids are the longest).
const MAX_CURSOR_ID_LEN: usize = 256;

/// A list's page size when `limit` is absent, and the largest it may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub default: usize,
    pub max: usize,
}

/// What every JSON list uses.
pub(crate) const LIMITS: Limits = Limits {
    default: 100,
    max: 1000,
};

/// A checked `after` and `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PageRequest {
    /// Read only keys after this one.
    pub after: Option<String>,
    pub limit: usize,
}

impl PageRequest {
    /// Checks the raw parameters; `is_cursor` says whether a value can be a key of this list.
    pub(crate) fn parse(
        after: Option<String>,
        limit: Option<&str>,
        limits: Limits,
        is_cursor: fn(&str) -> bool,
    ) -> Result<Self, ApiError> {
        let limit = match limit {
            None => limits.default,
            Some(s) => s
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=limits.max).contains(n))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("limit must be 1 to {}", limits.max))
                })?,
        };
        if after.as_deref().is_some_and(|a| !is_cursor(a)) {
            return Err(ApiError::BadRequest(format!(
                "{CURSOR} must be the next cursor of a previous page"
            )));
        }
        Ok(Self { after, limit })
    }
}

/// Whether `s` is a key of a table keyed by time: twenty digits, `-`, and an id without control
/// characters (CDRs, events, audit entries).
pub(crate) fn is_time_key(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() > 21
        && b.len() <= 21 + MAX_CURSOR_ID_LEN
        && b[..20].iter().all(u8::is_ascii_digit)
        && b[20] == b'-'
        && !s.chars().any(char::is_control)
}

/// A list's query string, deserialized into `T` (which should deny unknown fields); too long or
/// malformed is a JSON 400 rather than axum's plain-text rejection.
pub(crate) struct ListQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ListQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if parts.uri.query().is_some_and(|q| q.len() > MAX_QUERY_BYTES) {
            return Err(ApiError::BadRequest(format!(
                "query string longer than {MAX_QUERY_BYTES} bytes"
            )));
        }
        let Query(raw) = Query::<T>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError::BadRequest(format!("invalid query: {}", e.body_text())))?;
        Ok(Self(raw))
    }
}

/// One page of records.
#[derive(Debug)]
pub(crate) struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `after` to continue; `None` on the last page.
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// A page from up to `limit + 1` records read in key order after the cursor: the extra one only
    /// tells that there is more.
    pub(crate) fn from_overfetch(
        mut rows: Vec<T>,
        limit: usize,
        key: impl Fn(&T) -> String,
    ) -> Self {
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(key)
        } else {
            None
        };
        Self { items: rows, next }
    }
}

/// The first key to read: the later of the range's own start and just past the cursor.
pub(crate) fn start_key(from: Option<String>, after: Option<&str>) -> String {
    let from = from.unwrap_or_default();
    match after {
        // NUL is the least byte: `{after}\0` is the first key after `after`.
        Some(after) => from.max(format!("{after}\u{0}")),
        None => from,
    }
}

/// Where a bounded scan reads from: the replicated tables, or a map in tests.
pub(crate) trait RangeSource<R> {
    /// [`StateReader::scan_range`]: records with `from <= key < to`, visiting at most `max_rows`,
    /// kept when `keep` says so, and the key to resume from when the visit stopped early.
    fn scan(
        &self,
        from: &str,
        to: &str,
        max_rows: usize,
        keep: &mut dyn FnMut(&R) -> bool,
    ) -> Result<(Vec<R>, Option<String>), StorageError>;
}

impl<R: Record> RangeSource<R> for StateReader {
    fn scan(
        &self,
        from: &str,
        to: &str,
        max_rows: usize,
        keep: &mut dyn FnMut(&R) -> bool,
    ) -> Result<(Vec<R>, Option<String>), StorageError> {
        self.scan_range::<R>(from, to, max_rows, keep)
    }
}

/// A filtered read of a key range whose work is bounded.
pub(crate) struct Scan<'a, R> {
    /// First key to read (see [`start_key`]).
    pub from: String,
    /// First key not to read.
    pub to: &'a str,
    pub limit: usize,
    /// Rows visited at most, matching or not.
    pub budget: usize,
    /// Which records to keep; `None` keeps every one (and reads no more than the page needs).
    pub filter: Option<&'a dyn Fn(&R) -> bool>,
}

/// Up to `limit` kept records in key order, visiting at most `budget` rows. When the budget runs
/// out before the page is full the page still carries a cursor (the last row looked at), so a filter
/// that matches little costs a bounded amount per request and paging goes on where it stopped.
pub(crate) fn scan_page<R: Record>(
    src: &dyn RangeSource<R>,
    scan: Scan<'_, R>,
) -> Result<Page<R>, StorageError> {
    let want = scan.limit.saturating_add(1);
    let mut from = scan.from;
    let mut left = scan.budget;
    let mut rows = Vec::new();
    let mut last_visited: Option<String> = None;
    let mut exhausted = false;
    while rows.len() < want && left > 0 {
        let need = want - rows.len();
        let chunk = match scan.filter {
            Some(_) => need.max(MIN_CHUNK),
            None => need,
        }
        .min(left);
        let mut keep = |r: &R| {
            last_visited = Some(r.key());
            scan.filter.is_none_or(|f| f(r))
        };
        let (found, resume) = src.scan(&from, scan.to, chunk, &mut keep)?;
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
    let page = Page::from_overfetch(rows, scan.limit, R::key);
    let next = match page.next {
        Some(next) => Some(next),
        None if exhausted => None,
        // The budget ran out: resume after the last row looked at, matched or not.
        None => last_visited,
    };
    Ok(Page { next, ..page })
}

/// A [`RangeSource`] over a map, with the number of rows visited, for unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::cell::Cell;
    use std::collections::BTreeMap;

    use storage::{Record, StorageError};

    use super::RangeSource;

    pub(crate) struct MapSource<R> {
        rows: BTreeMap<String, R>,
        pub visited: Cell<usize>,
    }

    impl<R: Record> MapSource<R> {
        pub(crate) fn new(rows: impl IntoIterator<Item = R>) -> Self {
            Self {
                rows: rows.into_iter().map(|r| (r.key(), r)).collect(),
                visited: Cell::new(0),
            }
        }
    }

    impl<R: Record + Clone> RangeSource<R> for MapSource<R> {
        fn scan(
            &self,
            from: &str,
            to: &str,
            max_rows: usize,
            keep: &mut dyn FnMut(&R) -> bool,
        ) -> Result<(Vec<R>, Option<String>), StorageError> {
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
}

#[cfg(test)]
mod tests {
    use storage::model::{Event, Severity};

    use super::testing::MapSource;
    use super::*;

    fn request(after: Option<&str>, limit: Option<&str>) -> Result<PageRequest, ApiError> {
        PageRequest::parse(after.map(str::to_owned), limit, LIMITS, is_time_key)
    }

    fn refused(after: Option<&str>, limit: Option<&str>, needle: &str) {
        match request(after, limit) {
            Err(ApiError::BadRequest(msg)) => {
                assert!(msg.contains(needle), "{after:?} {limit:?}: {msg:?}");
            }
            other => panic!("{after:?} {limit:?} gave {other:?}"),
        }
    }

    #[test]
    fn default_and_maximum_limit() {
        let r = request(None, None).unwrap();
        assert_eq!((r.after, r.limit), (None, 100));
        assert_eq!(request(None, Some("1000")).unwrap().limit, 1000);
        assert_eq!(request(None, Some("1")).unwrap().limit, 1);
        for bad in [
            "1001",
            "0",
            "-1",
            "ten",
            "",
            "1e3",
            "99999999999999999999999",
        ] {
            refused(None, Some(bad), "limit must be 1 to 1000");
        }
        let csv = Limits {
            default: 5,
            max: 10,
        };
        let r = PageRequest::parse(None, None, csv, is_time_key).unwrap();
        assert_eq!(r.limit, 5);
        assert!(PageRequest::parse(None, Some("11"), csv, is_time_key).is_err());
    }

    #[test]
    fn bad_cursors_are_refused_by_name() {
        for bad in [
            "",
            "x",
            "00000000000000000001",
            "00000000000000000001-",
            "0000000000000000000a-x",
            "00000000000000000001-a\nb",
        ] {
            refused(Some(bad), None, "after must be the next cursor");
        }
        let long = format!("{:020}-{}", 1, "i".repeat(MAX_CURSOR_ID_LEN + 1));
        refused(Some(&long), None, "after");
        let ok = format!("{:020}-{}", 1, "i".repeat(MAX_CURSOR_ID_LEN));
        assert_eq!(request(Some(&ok), None).unwrap().after, Some(ok));
        // Each list says what its cursors look like.
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        assert!(PageRequest::parse(Some("1001".into()), None, LIMITS, digits).is_ok());
        assert!(PageRequest::parse(Some("10a".into()), None, LIMITS, digits).is_err());
    }

    #[test]
    fn only_a_full_page_has_a_next() {
        let page = Page::from_overfetch(vec![1, 2, 3], 2, ToString::to_string);
        assert_eq!((page.items, page.next), (vec![1, 2], Some("2".into())));
        let last = Page::from_overfetch(vec![1, 2], 2, ToString::to_string);
        assert_eq!((last.items, last.next), (vec![1, 2], None));
        let empty = Page::from_overfetch(Vec::<u8>::new(), 2, ToString::to_string);
        assert_eq!((empty.items.len(), empty.next), (0, None));
    }

    #[test]
    fn the_cursor_starts_after_itself_and_never_before_the_range() {
        assert_eq!(start_key(None, None), "");
        assert_eq!(start_key(None, Some("k")), "k\u{0}");
        assert_eq!(start_key(Some("m".into()), Some("k")), "m");
        assert_eq!(start_key(Some("a".into()), Some("k")), "k\u{0}");
    }

    fn event(at: u64, severity: Severity) -> Event {
        Event {
            at,
            seq: format!("{at:08x}"),
            kind: "test".into(),
            severity,
            node_id: 1,
            source: None,
            message: String::new(),
        }
    }

    /// Follows `next` from the start with `limit`; every page's items and the request count.
    fn walk(
        src: &MapSource<Event>,
        limit: usize,
        budget: usize,
        critical: bool,
    ) -> (Vec<u64>, usize) {
        let only = |e: &Event| e.severity == Severity::Critical;
        let mut after: Option<String> = None;
        let mut seen = Vec::new();
        for requests in 1..1000 {
            let scan = Scan {
                from: start_key(None, after.as_deref()),
                to: "\u{7f}",
                limit,
                budget,
                filter: critical.then_some(&only as &dyn Fn(&Event) -> bool),
            };
            let page = scan_page(src, scan).unwrap();
            assert!(page.items.len() <= limit);
            seen.extend(page.items.iter().map(|e| e.at));
            match page.next {
                Some(next) => after = Some(next),
                None => return (seen, requests),
            }
        }
        panic!("paging does not end");
    }

    #[test]
    fn small_pages_return_every_record_once_and_the_last_has_no_next() {
        let src = MapSource::new((0..7).map(|i| event(i, Severity::Info)));
        let (seen, requests) = walk(&src, 2, 10_000, false);
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
        assert_eq!(requests, 4, "2 + 2 + 2 + 1");
        // A page that ends exactly at the end of the list is the last: no empty page after it.
        let src = MapSource::new((0..6).map(|i| event(i, Severity::Info)));
        assert_eq!(walk(&src, 2, 10_000, false).1, 3);
        let empty = MapSource::<Event>::new([]);
        assert_eq!(walk(&empty, 2, 10_000, false), (vec![], 1));
    }

    #[test]
    fn a_budget_cut_resumes_after_the_last_row_looked_at() {
        // Every 10th event is critical; 30 rows visited per request at most.
        let src = MapSource::new((0..100).map(|i| {
            let s = if i % 10 == 9 {
                Severity::Critical
            } else {
                Severity::Info
            };
            event(i, s)
        }));
        let (seen, requests) = walk(&src, 5, 30, true);
        assert_eq!(seen, [9, 19, 29, 39, 49, 59, 69, 79, 89, 99]);
        assert_eq!(
            requests, 4,
            "each request stops at its budget with a cursor"
        );
        assert_eq!(
            src.visited.get(),
            100,
            "every row visited once, none skipped"
        );
    }
}
