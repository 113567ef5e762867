// PLACEHOLDER until branch source lands: the agreed interface only, so the pipeline compiles.
// Every entry point returns an error; the lead takes the real file from branch `source` at merge.

pub struct OpenOptions {
    pub raw: Option<RawVideo>,
    pub fps: Option<f64>,
    pub format: Option<String>,
}

pub struct RawVideo {
    pub width: u32,
    pub height: u32,
    pub pix_fmt: String,
}

pub struct SourceInfo {
    pub width: u32,
    pub height: u32,
    pub fps: Option<f64>,
    pub frames: Option<u64>,
    pub duration: Option<f64>,
    pub codec: String,
    pub container: String,
    pub is_stream: bool,
}

pub struct Frame {
    pub index: u64,
    pub pts: f64,
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

pub trait FrameSource: Send {
    fn info(&self) -> &SourceInfo;
    fn next_frame(&mut self, frame: &mut Frame) -> anyhow::Result<bool>;
}

pub fn open(input: &str, opts: &OpenOptions) -> anyhow::Result<Box<dyn FrameSource>> {
    let _ = opts;
    anyhow::bail!("cannot open '{input}': this build has no decoder yet (placeholder until branch source lands)")
}
