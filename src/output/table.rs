//! Plain aligned text tables for people (`--json` is for scripts), kept
//! within [`MAX_WIDTH`] columns on a terminal or not: a cell too long for
//! its column is cut with `…` (commands say the full text below the table
//! and in `--json`).

/// No line of a table is wider than this.
pub const MAX_WIDTH: usize = 120;

/// Columns are padded to their widest cell; the last column is not padded.
/// A row with fewer cells than the header (a node that has nothing but its
/// outcome to show) lets its last cell run over the columns it lacks, so a
/// long reason never widens the column it starts in.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let len = |s: &str| s.chars().count();
    let mut width: Vec<usize> = header.iter().map(|h| len(h)).collect();
    for row in rows {
        let spans = row.len() < cols;
        for (i, cell) in row.iter().enumerate().take(cols) {
            if !(spans && i + 1 == row.len()) {
                width[i] = width[i].max(len(cell));
            }
        }
    }
    // Shrink the widest column until the table fits (never below its
    // header or 8 columns; the first, the node's name, is never cut).
    let mut floor: Vec<usize> = header.iter().map(|h| len(h).max(8)).collect();
    floor[0] = width[0];
    while width.iter().sum::<usize>() + 2 * (cols - 1) > MAX_WIDTH {
        let Some(i) = (0..cols)
            .filter(|&i| width[i] > floor[i])
            .max_by_key(|&i| width[i])
        else {
            break;
        };
        width[i] -= 1;
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate().take(cols) {
            let last = i + 1 == cells.len().min(cols);
            let room = if last {
                MAX_WIDTH.saturating_sub(len(&s)).max(1)
            } else {
                width[i]
            };
            let cell = cut(cell, room);
            s.push_str(&cell);
            if !last {
                s.extend(std::iter::repeat_n(' ', width[i] - len(&cell) + 2));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(header);
    for row in rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells);
    }
    out
}

/// `s` in at most `room` characters, cut with `…`.
fn cut(s: &str, room: usize) -> String {
    if s.chars().count() <= room {
        return s.to_string();
    }
    let mut c: String = s.chars().take(room.saturating_sub(1)).collect();
    c.push('…');
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let t = render(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    BB\nxyz  1\n");
    }

    #[test]
    fn a_short_row_runs_over_and_never_widens_its_column() {
        let t = render(
            &["NODE", "STATUS", "LOAD"],
            &[
                vec!["n1".into(), "ok".into(), "0.1".into()],
                vec!["n2".into(), "unreachable: connection refused".into()],
            ],
        );
        assert_eq!(
            t,
            "NODE  STATUS  LOAD\nn1    ok      0.1\nn2    unreachable: connection refused\n"
        );
    }

    #[test]
    fn lines_stay_within_the_limit() {
        let long = "x".repeat(300);
        let t = render(
            &["NODE", "STATUS", "PATH"],
            &[
                vec!["n1".into(), long.clone(), long.clone()],
                vec!["n2".into(), long.clone()],
            ],
        );
        for l in t.lines() {
            assert!(l.chars().count() <= MAX_WIDTH, "{l}");
        }
        assert!(t.lines().nth(1).unwrap().ends_with('…'));
        assert!(t.lines().nth(2).unwrap().ends_with('…'));
    }
}
