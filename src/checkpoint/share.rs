//! Every rank's optional message, gathered on every rank: how a failure one rank saw
//! (the lock's owner, a background write's error) reaches every rank's error line.
use crate::dist::{DistError, Group};

/// Collective over `group`: `out[r]` is rank r's `mine`. Two all-gathers of u64s (the
/// lengths, then the bytes packed 8 to a word); one when no rank has a message.
pub fn gather_messages(
    group: &Group,
    mine: Option<&str>,
) -> Result<Vec<Option<String>>, DistError> {
    // 0: no message; n + 1: n bytes.
    let lens = group.all_gather_u64s(&[mine.map_or(0, |m| m.len() as u64 + 1)])?;
    let longest = lens.iter().max().copied().unwrap_or(0).saturating_sub(1) as usize;
    if lens.iter().all(|&l| l == 0) {
        return Ok(vec![None; lens.len()]);
    }
    let words = longest.div_ceil(8).max(1);
    let mut packed = vec![0u64; words];
    for (i, b) in mine.unwrap_or("").bytes().enumerate() {
        packed[i / 8] |= (b as u64) << (8 * (i % 8));
    }
    let all = group.all_gather_u64s(&packed)?;
    Ok(lens
        .iter()
        .zip(all.chunks(words))
        .map(|(&len, w)| {
            let n = len.checked_sub(1)? as usize;
            let bytes: Vec<u8> = (0..n).map(|i| (w[i / 8] >> (8 * (i % 8))) as u8).collect();
            Some(String::from_utf8_lossy(&bytes).into_owned())
        })
        .collect())
}
