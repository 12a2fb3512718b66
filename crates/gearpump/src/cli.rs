//! Command-line helpers shared by the `gear` binary and the examples.

/// Rewrites the guide's single-dash long options (`-split 4`) to GNU style (`--split 4`), so a
/// `clap` parser accepts both. Single letters (`-h`), negative numbers (`-1`) and everything
/// after `--` are left alone.
///
/// ```
/// let args = gearpump::cli::normalize_args(["wordcount", "-split", "4", "--sum", "2", "-runseconds", "-1", "-h"]);
/// assert_eq!(args, ["wordcount", "--split", "4", "--sum", "2", "--runseconds", "-1", "-h"]);
/// ```
pub fn normalize_args<I, S>(args: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut rest = false;
    args.into_iter()
        .map(Into::into)
        .enumerate()
        .map(|(i, arg)| {
            if i == 0 || rest {
                return arg;
            }
            if arg == "--" {
                rest = true;
                return arg;
            }
            let bytes = arg.as_bytes();
            let single_dash_word = bytes.len() > 2
                && bytes[0] == b'-'
                && bytes[1] != b'-'
                && !bytes[1].is_ascii_digit()
                && bytes[1] != b'.';
            if single_dash_word { format!("-{arg}") } else { arg }
        })
        .collect()
}
