//! The start-up summary: an aligned two-column table.

/// Formats `(key, value)` rows as a boxed two-column table, columns padded to the widest
/// entry (widths in characters). Ends with a newline.
///
/// ```text
/// +-------+-------+
/// | model | gpt   |
/// | stage | 2     |
/// +-------+-------+
/// ```
pub fn summary_table(rows: &[(&str, String)]) -> String {
    let w = |s: &str| s.chars().count();
    let kw = rows.iter().map(|(k, _)| w(k)).max().unwrap_or(0);
    let vw = rows.iter().map(|(_, v)| w(v)).max().unwrap_or(0);
    let rule = format!("+{}+{}+\n", "-".repeat(kw + 2), "-".repeat(vw + 2));
    let mut s = rule.clone();
    for (k, v) in rows {
        s.push_str(&format!(
            "| {k}{} | {v}{} |\n",
            " ".repeat(kw - w(k)),
            " ".repeat(vw - w(v))
        ));
    }
    s.push_str(&rule);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let t = summary_table(&[
            ("model", "gpt 4x128".into()),
            ("zero.stage", "2".into()),
            ("µ", "x".into()),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(
            lines
                .iter()
                .all(|l| l.chars().count() == lines[0].chars().count()),
            "{t}"
        );
        assert_eq!(lines[2], "| zero.stage | 2         |");
        assert_eq!(summary_table(&[]), "+--+--+\n+--+--+\n");
    }
}
