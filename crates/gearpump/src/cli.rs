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

/// Where a client of a running application finds its cluster, as `gear` does: the built-in
/// defaults, then `conf/gear.conf` under `GEARPUMP_HOME` (else the working directory), then
/// `conf` (a `-conf FILE`); `master` (`host:port,host:port`, the guide's `-master`) replaces
/// the configured masters. Returns the masters and the cluster secret to prove.
pub fn cluster_of(
    master: Option<&str>,
    conf: Option<&std::path::Path>,
) -> Result<(Vec<gearpump_config::HostPort>, gearpump_transport::tcp::ClusterSecret), String> {
    use gearpump_config::GearConfig;
    let home = std::env::var_os("GEARPUMP_HOME").map(std::path::PathBuf::from).unwrap_or_else(|| ".".into());
    let mut config =
        GearConfig::defaults().with_optional_file(&home.join("conf/gear.conf")).map_err(|e| e.to_string())?;
    if let Some(path) = conf {
        config = config.with_file(path).map_err(|e| e.to_string())?;
    }
    let masters = match master {
        Some(list) => list
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse().map_err(|e| format!("-master {s:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?,
        None => config.masters().map_err(|e| e.to_string())?,
    };
    if masters.is_empty() {
        return Err("no master given (-master host:port) or configured (gearpump.cluster.masters)".into());
    }
    let secret = config.cluster_secret().map_err(|e| e.to_string())?;
    Ok((masters, secret))
}
