//! How a video asks to be shown: the stream's display matrix (a phone's portrait clip is stored
//! landscape with a 90° matrix), reduced to a turn by a multiple of 90° and a mirror, and applied to
//! decoded RGB24 frames so that the network sees what a player shows (docs/architecture.md,
//! "Orientation").

/// A signed permutation of the axes: displayed `(X, Y) = (a·x + c·y, b·x + d·y)` plus the shift that
/// keeps both in range, for a source pixel `(x, y)` (y pointing down), as FFmpeg's display matrix
/// `[a b 0; c d 0; tx ty 1]` maps coordinates. Only multiples of 90° and mirrors: each of `a`, `b`,
/// `c`, `d` is −1, 0 or 1, one non-zero per row and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Orientation {
    a: i8,
    b: i8,
    c: i8,
    d: i8,
}

impl Default for Orientation {
    fn default() -> Self {
        Orientation::IDENTITY
    }
}

impl Orientation {
    pub const IDENTITY: Orientation = Orientation { a: 1, b: 0, c: 0, d: 1 };

    /// The orientation of FFmpeg's 3×3 display matrix (16.16 fixed point for the 2×2 part); `None`
    /// when it is not a turn by a multiple of 90° with an optional mirror (an arbitrary angle, a
    /// scale, a degenerate matrix).
    pub fn from_display_matrix(m: &[i32; 9]) -> Option<Orientation> {
        let part = [m[0], m[1], m[3], m[4]].map(i64::from);
        let scale = part.iter().map(|v| v.abs()).max().filter(|&s| s > 0)?;
        let mut signs = [0i8; 4];
        for (s, &v) in signs.iter_mut().zip(&part) {
            // Each entry is 0 or ±scale, within rounding of the fixed-point cosines.
            if v.abs() * 100 <= scale {
                *s = 0;
            } else if (v.abs() - scale).abs() * 100 <= scale {
                *s = v.signum() as i8;
            } else {
                return None;
            }
        }
        let [a, b, c, d] = signs;
        let permutes = (a != 0 && d != 0 && b == 0 && c == 0) || (a == 0 && d == 0 && b != 0 && c != 0);
        permutes.then_some(Orientation { a, b, c, d })
    }

    pub fn is_identity(self) -> bool {
        self == Orientation::IDENTITY
    }

    /// Whether width and height trade places (a quarter turn).
    pub fn swaps_axes(self) -> bool {
        self.a == 0
    }

    /// Clockwise turn in degrees (0, 90, 180, 270) applied after the mirror, and whether the image
    /// is mirrored left to right first: the same transform, in words.
    pub fn describe(self) -> (u16, bool) {
        // A mirror flips the determinant's sign.
        let mirrored = i32::from(self.a) * i32::from(self.d) - i32::from(self.b) * i32::from(self.c) < 0;
        // Undo the mirror (x → −x negates the first row) and read the turn from where +x goes.
        let (a, b) = if mirrored { (-self.a, -self.b) } else { (self.a, self.b) };
        let turn = match (a, b) {
            (1, 0) => 0,
            (0, 1) => 90,
            (-1, 0) => 180,
            _ => 270,
        };
        (turn, mirrored)
    }

    /// Size of a `width × height` frame once displayed.
    pub fn displayed_size(self, width: u32, height: u32) -> (u32, u32) {
        if self.swaps_axes() { (height, width) } else { (width, height) }
    }

    /// Write the displayed form of the RGB24 frame `src` (`width × height`, packed rows) into `dst`.
    pub fn apply(self, src: &[u8], width: usize, height: usize, dst: &mut Vec<u8>) {
        assert_eq!(src.len(), width * height * 3, "an RGB24 frame of {width}×{height}");
        let (dw, dh) = self.displayed_size(width as u32, height as u32);
        let (dw, dh) = (dw as usize, dh as usize);
        dst.resize(dw * dh * 3, 0);
        // Displayed position of source (x, y) along each axis: a·x + c·y, shifted into 0..len.
        let axis = |p: i8, q: i8, len: usize| -> (isize, isize, isize) {
            let shift = if p < 0 || q < 0 { len as isize - 1 } else { 0 };
            (isize::from(p), isize::from(q), shift)
        };
        let (ax, cx, sx) = axis(self.a, self.c, dw);
        let (by, dy, sy) = axis(self.b, self.d, dh);
        // One source row at a time: the destination index moves by a constant stride along it.
        let step = (by * dw as isize + ax) * 3;
        for (y, row) in src.chunks_exact(width * 3).enumerate() {
            let y = y as isize;
            let (x0, y0) = (cx * y + sx, dy * y + sy);
            let mut at = (y0 * dw as isize + x0) * 3;
            for px in row.chunks_exact(3) {
                let i = at as usize;
                dst[i..i + 3].copy_from_slice(px);
                at += step;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: i32 = 1 << 16;

    /// What FFmpeg's `av_display_rotation_set(m, angle)` writes for a clockwise turn by `angle`
    /// degrees (what the mp4 muxer stores for a `rotate=90` tag).
    fn rotation_matrix(angle: f64) -> [i32; 9] {
        let r = (-angle).to_radians();
        let (s, c) = (r.sin(), r.cos());
        let fixed = |v: f64| (v * f64::from(ONE)).round() as i32;
        [fixed(c), fixed(-s), 0, fixed(s), fixed(c), 0, 0, 0, 1 << 30]
    }

    /// FFmpeg's `av_display_matrix_flip(m, 1, 0)`: the displayed image mirrored left to right.
    fn hflip(mut m: [i32; 9]) -> [i32; 9] {
        for i in [0, 3, 6] {
            m[i] = -m[i];
        }
        m
    }

    /// A 3×2 frame whose pixels hold their own (x, y).
    fn frame() -> Vec<u8> {
        (0..2u8).flat_map(|y| (0..3u8).flat_map(move |x| [x, y, 7])).collect()
    }

    fn at(buf: &[u8], w: usize, x: usize, y: usize) -> (u8, u8) {
        (buf[(y * w + x) * 3], buf[(y * w + x) * 3 + 1])
    }

    #[test]
    fn reads_turns_and_mirrors() {
        let read = |m: [i32; 9]| Orientation::from_display_matrix(&m).map(Orientation::describe);
        assert_eq!(read(rotation_matrix(0.0)), Some((0, false)));
        assert_eq!(read(rotation_matrix(90.0)), Some((90, false)));
        assert_eq!(read(rotation_matrix(180.0)), Some((180, false)));
        assert_eq!(read(rotation_matrix(270.0)), Some((270, false)));
        assert_eq!(read(rotation_matrix(-90.0)), Some((270, false)));
        assert_eq!(read(hflip(rotation_matrix(0.0))), Some((0, true)));
        // Turned a quarter clockwise, then mirrored: mirrored, then turned three quarters.
        assert_eq!(read(hflip(rotation_matrix(90.0))), Some((270, true)));
        assert_eq!(Orientation::from_display_matrix(&rotation_matrix(30.0)), None);
        assert_eq!(Orientation::from_display_matrix(&[0; 9]), None);
    }

    #[test]
    fn quarter_turn_clockwise_moves_the_top_left_to_the_top_right() {
        let o = Orientation::from_display_matrix(&rotation_matrix(90.0)).unwrap();
        assert_eq!(o.displayed_size(3, 2), (2, 3));
        let mut out = Vec::new();
        o.apply(&frame(), 3, 2, &mut out);
        // Displayed 2 wide, 3 high: the source's bottom row becomes the left column, read downwards.
        assert_eq!(at(&out, 2, 0, 0), (0, 1));
        assert_eq!(at(&out, 2, 1, 0), (0, 0));
        assert_eq!(at(&out, 2, 1, 2), (2, 0));
        assert_eq!(at(&out, 2, 0, 2), (2, 1));
    }

    #[test]
    fn half_turn_and_mirror() {
        let mut out = Vec::new();
        Orientation::from_display_matrix(&rotation_matrix(180.0)).unwrap().apply(&frame(), 3, 2, &mut out);
        assert_eq!(at(&out, 3, 0, 0), (2, 1));
        assert_eq!(at(&out, 3, 2, 1), (0, 0));
        Orientation::from_display_matrix(&hflip(rotation_matrix(0.0))).unwrap().apply(&frame(), 3, 2, &mut out);
        assert_eq!(at(&out, 3, 0, 0), (2, 0));
        assert_eq!(at(&out, 3, 2, 1), (0, 1));
    }

    #[test]
    fn every_orientation_is_a_permutation_of_the_pixels() {
        let src: Vec<u8> = (0..5 * 4).flat_map(|i| [i as u8, 0, 0]).collect();
        for angle in [0.0, 90.0, 180.0, 270.0] {
            for flip in [false, true] {
                let m = if flip { hflip(rotation_matrix(angle)) } else { rotation_matrix(angle) };
                let o = Orientation::from_display_matrix(&m).unwrap();
                let mut out = Vec::new();
                o.apply(&src, 5, 4, &mut out);
                let mut seen: Vec<u8> = out.chunks(3).map(|p| p[0]).collect();
                seen.sort();
                assert_eq!(seen, (0..20).collect::<Vec<u8>>(), "angle {angle} flip {flip}");
            }
        }
    }
}
