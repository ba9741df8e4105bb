//! The sounds the PBX makes itself when no recording is set: a chime for a menu without a
//! recorded greeting, the three rising tones of an invalid choice (the special information tone
//! callers know from "number not in service"), the beeps that ask to record, and the tones that
//! stand in for the spoken prompts on a node that cannot speak ([`super::prompts`]). Synthesised
//! once, at 8 kHz.

use std::sync::{Arc, OnceLock};

use pbx_media::tone::ToneGenerator;

const RATE: u32 = 8000;
const LEVEL: i16 = 6000;

/// Tones of `(Hz, ms)` one after another at `level` (0 Hz: silence), 8 kHz.
pub(super) fn tones(level: i16, parts: &[(f32, usize)]) -> Arc<[i16]> {
    let mut pcm = Vec::new();
    for &(freq, ms) in parts {
        let n = RATE as usize * ms / 1000;
        let start = pcm.len();
        pcm.resize(start + n, 0);
        if freq > 0.0
            && let Ok(mut g) = ToneGenerator::new(freq, level, RATE)
        {
            g.fill(&mut pcm[start..]);
        }
    }
    pcm.into()
}

/// Played in place of a menu's greeting when it has none (or its file is not readable here).
pub(crate) fn chime() -> Arc<[i16]> {
    static CHIME: OnceLock<Arc<[i16]>> = OnceLock::new();
    Arc::clone(
        CHIME.get_or_init(|| tones(LEVEL, &[(660.0, 250), (0.0, 50), (880.0, 400), (0.0, 300)])),
    )
}

/// Played after a key that leads nowhere.
pub(crate) fn invalid() -> Arc<[i16]> {
    static SIT: OnceLock<Arc<[i16]>> = OnceLock::new();
    Arc::clone(SIT.get_or_init(|| {
        tones(
            LEVEL,
            &[(950.0, 330), (1400.0, 330), (1800.0, 330), (0.0, 500)],
        )
    }))
}

/// A cell of a clip synthesised on first use.
fn once(cell: &'static OnceLock<Arc<[i16]>>, parts: &[(f32, usize)]) -> Arc<[i16]> {
    Arc::clone(cell.get_or_init(|| tones(LEVEL, parts)))
}

/// Two short beeps: enter digits (a PIN, a choice).
pub(crate) fn ask() -> Arc<[i16]> {
    static ASK: OnceLock<Arc<[i16]>> = OnceLock::new();
    once(&ASK, &[(800.0, 150), (0.0, 100), (800.0, 150), (0.0, 200)])
}

/// One short beep per new message, up to nine.
pub(crate) fn count(n: usize) -> Arc<[i16]> {
    let mut parts = vec![(0.0, 300)];
    parts.extend(std::iter::repeat_n([(600.0, 150), (0.0, 150)], n.min(9)).flatten());
    tones(LEVEL, &parts)
}

/// A long beep: recording starts.
pub(crate) fn record_beep() -> Arc<[i16]> {
    static RECORD: OnceLock<Arc<[i16]>> = OnceLock::new();
    once(&RECORD, &[(1000.0, 600), (0.0, 100)])
}

/// Two rising notes: kept.
pub(crate) fn saved() -> Arc<[i16]> {
    static SAVED: OnceLock<Arc<[i16]>> = OnceLock::new();
    once(&SAVED, &[(600.0, 150), (900.0, 250), (0.0, 300)])
}

/// Three falling notes: the call ends.
pub(crate) fn goodbye() -> Arc<[i16]> {
    static BYE: OnceLock<Arc<[i16]>> = OnceLock::new();
    once(
        &BYE,
        &[(900.0, 200), (700.0, 200), (500.0, 300), (0.0, 200)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbx_media::tone::dominant;

    #[test]
    fn the_invalid_notice_is_the_three_rising_tones() {
        let pcm = invalid();
        let third = 330 * 8;
        let found: Vec<_> = (0..3)
            .map(|i| {
                dominant(
                    &pcm[i * third + 200..(i + 1) * third - 200],
                    RATE,
                    &[950.0, 1400.0, 1800.0],
                )
            })
            .collect();
        assert_eq!(found, [Some(950.0), Some(1400.0), Some(1800.0)]);
        assert!(chime().len() >= 8000);
    }
}
