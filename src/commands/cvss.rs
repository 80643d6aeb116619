//! `gantry cvss [VECTOR…]`: scores CVSS v3.0, v3.1 and v4.0 vectors.
//!
//! Prints `vector<TAB>score<TAB>severity` per vector, where the score is the most specific one
//! the vector defines (v3.x: environmental, else temporal, else base; v4.0: the score of the
//! whole vector). With no arguments, vectors are read from standard input, one per line
//! (blank lines are skipped). A vector that cannot be scored gets `vector<TAB>invalid<TAB>why`
//! in its place, and the command exits 1 after scoring the rest.

use std::io::{BufRead, Write};

use anyhow::Context;
use gantry_gates::cvss;

/// Arguments of `gantry cvss`.
#[derive(Debug, Clone, clap::Args)]
pub struct CvssArgs {
    /// Vectors to score (`CVSS:3.1/AV:N/…`); none reads them from standard input.
    pub vectors: Vec<String>,
}

/// Scores every vector; returns whether all of them were valid.
pub fn run(args: &CvssArgs, input: impl BufRead, out: &mut impl Write) -> anyhow::Result<bool> {
    let mut all_valid = true;
    let mut score = |vector: &str, out: &mut dyn Write| -> anyhow::Result<()> {
        let line = match cvss::score(vector) {
            Ok(scored) => format!("{}\t{:.1}\t{}", scored.vector, scored.score, scored.severity),
            Err(error) => {
                all_valid = false;
                format!("{}\tinvalid\t{error}", vector.trim())
            }
        };
        writeln!(out, "{line}").context("write the scores")
    };
    if args.vectors.is_empty() {
        for line in input.lines() {
            let line = line.context("read vectors from standard input")?;
            if line.trim().is_empty() {
                continue;
            }
            score(&line, out)?;
        }
    } else {
        for vector in &args.vectors {
            score(vector, out)?;
        }
    }
    Ok(all_valid)
}

/// Ends the process with exit code 1 when a vector was invalid (after flushing the scores).
pub fn exit_unless_valid(all_valid: bool) {
    if !all_valid {
        let _ = std::io::stdout().flush();
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(vectors: &[&str], stdin: &str) -> (bool, String) {
        let args = CvssArgs { vectors: vectors.iter().map(|v| v.to_string()).collect() };
        let mut out = Vec::new();
        let valid = run(&args, stdin.as_bytes(), &mut out).unwrap();
        (valid, String::from_utf8(out).unwrap())
    }

    #[test]
    fn arguments_and_standard_input_are_scored_line_by_line() {
        let (valid, out) = scores(&["CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"], "");
        assert!(valid);
        assert_eq!(out, "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H\t9.8\tcritical\n");
        let (valid, out) = scores(&[], "CVSS:3.0/AV:L/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N\n\nnonsense\n");
        assert!(!valid);
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            [
                "CVSS:3.0/AV:L/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N\t0.0\tnone",
                "nonsense\tinvalid\tscore CVSS vector \"nonsense\": component \"nonsense\" is not of the form METRIC:VALUE",
            ]
        );
    }
}
