//! `coinfer labels`: the class names, one per line in id order (a valid labels file itself).

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use crate::labels::Labels;

#[derive(Debug, Clone, Args)]
pub struct LabelsArgs {
    /// Read this labels file (txt, JSON {name: id}, CSV id,name) instead of the embedded Kinetics-400 list
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,

    /// Print a JSON object {name: id}
    #[arg(long)]
    pub json: bool,
}

pub fn execute(args: &LabelsArgs) -> anyhow::Result<()> {
    let labels = match &args.labels {
        Some(p) => Labels::from_file(p)?,
        None => Labels::kinetics400(),
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.json {
        let map: serde_json::Map<String, serde_json::Value> =
            labels.names().iter().enumerate().map(|(i, n)| (n.clone(), i.into())).collect();
        serde_json::to_writer(&mut out, &map)?;
        writeln!(out)?;
    } else {
        for name in labels.names() {
            writeln!(out, "{name}")?;
        }
    }
    Ok(out.flush()?)
}
