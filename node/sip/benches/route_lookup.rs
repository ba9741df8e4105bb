//! Cost of one outbound route lookup ([`OutboundTable::select`]) as a call pays it, with 1, 100 and
//! 1,000 routes in the table and the dialled number (95550100) matching only the last one, and the
//! cost of compiling such a table ([`OutboundTable::build`], paid once per routing change, not per
//! call; the node adds reading the records from RocksDB, see `pbx_routing_compile_seconds`).
//!
//! The routes before the last never match, in two shapes: `7NXX1XXX` (missed on the first digit)
//! and `9555010[1-9]` (same length and first seven digits as the number: missed on the last digit,
//! the slowest miss). The caller's permission lists only the last route.
//!
//! Run: `cargo bench -p pbx-sip --bench route_lookup [-- MILLIS_PER_SAMPLE]`; figures go in
//! BENCHMARKS.md ("Calls through a trunk").

use std::hint::black_box;
use std::time::{Duration, Instant};

use pbx_sip::routing::{OutboundSpec, OutboundTable, Permission, RouteClass, Selection};

const DIALLED: &str = "95550100";
/// Samples per row; the median is reported.
const SAMPLES: usize = 21;

fn spec(name: String, pattern: String, trunks: Vec<String>) -> OutboundSpec {
    OutboundSpec {
        name,
        patterns: vec![pattern],
        strip: 1,
        prepend: String::new(),
        class: RouteClass::Local,
        trunks,
        caller_id: None,
    }
}

/// `routes` routes: `routes - 1` that miss (pattern from `decoy`), then the one that carries the call.
fn routes(routes: usize, decoy: fn(usize) -> String) -> Vec<OutboundSpec> {
    let mut specs: Vec<OutboundSpec> = (0..routes - 1)
        .map(|i| {
            let trunks = vec![
                format!("decoy-t{:02}", i % 100),
                format!("decoy-t{:02}", (i + 1) % 100),
            ];
            spec(format!("decoy-{i:04}"), decoy(i), trunks)
        })
        .collect();
    specs.push(spec("national".into(), "9.".into(), vec!["carrier".into()]));
    specs
}

fn early_miss(i: usize) -> String {
    format!("7NXX{}XXX", i % 10)
}

fn late_miss(_: usize) -> String {
    "9555010[1-9]".into()
}

/// Runs `f` in batches of `iters` for about `per_sample` each, `SAMPLES` times; the median time of
/// one call of `f`.
fn measure(per_sample: Duration, mut f: impl FnMut()) -> Duration {
    // Calibrate: how many calls fill one sample.
    let mut iters = 1u64;
    loop {
        let started = Instant::now();
        for _ in 0..iters {
            f();
        }
        if started.elapsed() >= per_sample / 4 || iters >= 1 << 30 {
            let per = started.elapsed().as_secs_f64() / iters as f64;
            iters = ((per_sample.as_secs_f64() / per.max(1e-12)) as u64).max(1);
            break;
        }
        iters *= 4;
    }
    let mut times: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..iters {
                f();
            }
            started.elapsed().as_secs_f64() / iters as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    Duration::from_secs_f64(times[SAMPLES / 2])
}

fn main() {
    let per_sample = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .map_or(Duration::from_millis(50), Duration::from_millis);
    let permission = Permission {
        routes: vec!["national".into()],
        international_prefixes: Vec::new(),
    };
    println!("route lookup for {DIALLED}, matching the last route; median of {SAMPLES} samples");
    println!("| routes | misses before the match | select ns/lookup | build µs/table |");
    println!("|---|---|---|---|");
    for (shape, decoy) in [
        ("7NXX1XXX (first digit)", early_miss as fn(usize) -> String),
        ("9555010[1-9] (last digit)", late_miss),
    ] {
        for n in [1, 100, 1000] {
            if n == 1 && shape.starts_with('9') {
                continue; // one route has no misses: the same row as the first shape's
            }
            let specs = routes(n, decoy);
            let table = OutboundTable::build(&specs, &["911".into(), "112".into()])
                .expect("the bench's routes compile");
            match table.select(DIALLED, &permission) {
                Selection::Route { name, sent, .. } => {
                    assert_eq!((name, sent.as_str()), ("national", "5550100"));
                }
                other => panic!("{DIALLED} not routed by the last route: {other:?}"),
            }
            let select = measure(per_sample, || {
                black_box(table.select(black_box(DIALLED), black_box(&permission)));
            });
            let build = measure(per_sample, || {
                black_box(
                    OutboundTable::build(black_box(&specs), &[])
                        .expect("the bench's routes compile"),
                );
            });
            let shape = if n == 1 { "none" } else { shape };
            println!(
                "| {n} | {shape} | {:.0} | {:.1} |",
                select.as_secs_f64() * 1e9,
                build.as_secs_f64() * 1e6
            );
        }
    }
}
