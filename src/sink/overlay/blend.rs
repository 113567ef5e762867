//! Laying the RGBA panel on a planar YUV frame in the frame's own pixel format: the panel is
//! converted to premultiplied Y, U, V and alpha once each time it changes, and each frame then only
//! blends the panel's own pixels (docs/visual.md, "Colour").

use crate::sink::draw::Canvas;

/// The layout of a planar 8-bit YUV frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanarYuv {
    /// log2 of the horizontal and vertical chroma subsampling (4:2:0 is (1, 1), 4:4:4 is (0, 0)).
    pub chroma_shift: (u32, u32),
    /// Full range (0..=255, JPEG) rather than video range (16..=235).
    pub full_range: bool,
    /// BT.709 coefficients rather than BT.601.
    pub bt709: bool,
}

/// The panel as premultiplied planes, ready to blend: `value * alpha` and `alpha`, both scaled to 0..=255.
pub struct YuvPanel {
    pub width: usize,
    pub height: usize,
    y: Vec<u16>,
    alpha: Vec<u8>,
    chroma_width: usize,
    chroma_height: usize,
    u: Vec<u16>,
    v: Vec<u16>,
    chroma_alpha: Vec<u8>,
}

impl YuvPanel {
    pub fn new(canvas: &Canvas, format: PlanarYuv) -> Self {
        let (w, h) = (canvas.width, canvas.height);
        let (kr, kb) = if format.bt709 { (0.2126, 0.0722) } else { (0.299, 0.114) };
        let (y_scale, y_offset, c_scale) = if format.full_range { (255.0, 0.0, 255.0) } else { (219.0, 16.0, 224.0) };
        let mut y = Vec::with_capacity(w * h);
        let mut alpha = Vec::with_capacity(w * h);
        // Premultiplied chroma, full resolution, averaged down below.
        let mut u_full = Vec::with_capacity(w * h);
        let mut v_full = Vec::with_capacity(w * h);
        for p in &canvas.pixels {
            let a = p[3];
            // Premultiplied RGB is linear in alpha, so luma and chroma can be computed on it directly;
            // the offsets are what a full-alpha pixel of that colour would carry.
            let luma = kr * p[0] + (1.0 - kr - kb) * p[1] + kb * p[2];
            let cb = (p[2] - luma) / (2.0 * (1.0 - kb));
            let cr = (p[0] - luma) / (2.0 * (1.0 - kr));
            y.push(((y_offset * a + y_scale * luma) * 255.0).round().clamp(0.0, 65025.0) as u16);
            alpha.push((a * 255.0).round() as u8);
            u_full.push(128.0 * a + c_scale * cb);
            v_full.push(128.0 * a + c_scale * cr);
        }
        let (sx, sy) = format.chroma_shift;
        let chroma_width = w.div_ceil(1 << sx);
        let chroma_height = h.div_ceil(1 << sy);
        let mut u = Vec::with_capacity(chroma_width * chroma_height);
        let mut v = Vec::with_capacity(chroma_width * chroma_height);
        let mut chroma_alpha = Vec::with_capacity(chroma_width * chroma_height);
        for cy in 0..chroma_height {
            for cx in 0..chroma_width {
                let (mut su, mut sv, mut sa, mut n) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
                for yy in (cy << sy)..((cy + 1) << sy).min(h) {
                    for xx in (cx << sx)..((cx + 1) << sx).min(w) {
                        let i = yy * w + xx;
                        su += u_full[i];
                        sv += v_full[i];
                        sa += canvas.pixels[i][3];
                        n += 1.0;
                    }
                }
                u.push((su / n * 255.0).round().clamp(0.0, 65025.0) as u16);
                v.push((sv / n * 255.0).round().clamp(0.0, 65025.0) as u16);
                chroma_alpha.push((sa / n * 255.0).round() as u8);
            }
        }
        YuvPanel { width: w, height: h, y, alpha, chroma_width, chroma_height, u, v, chroma_alpha }
    }

    /// Blend onto the three planes of a frame with the panel's top-left corner at (`x`, `y`) in luma
    /// pixels (both multiples of the chroma subsampling); the panel must fit in the frame.
    pub fn blend(&self, planes: [(&mut [u8], usize); 3], x: usize, y: usize, format: PlanarYuv) {
        let [(luma, luma_stride), (u_plane, u_stride), (v_plane, v_stride)] = planes;
        blend_plane(luma, luma_stride, x, y, self.width, self.height, &self.y, &self.alpha);
        let (cx, cy) = (x >> format.chroma_shift.0, y >> format.chroma_shift.1);
        blend_plane(u_plane, u_stride, cx, cy, self.chroma_width, self.chroma_height, &self.u, &self.chroma_alpha);
        blend_plane(v_plane, v_stride, cx, cy, self.chroma_width, self.chroma_height, &self.v, &self.chroma_alpha);
    }
}

/// `out = premultiplied + (1 - alpha) * in`, in integers rounded to nearest.
#[allow(clippy::too_many_arguments)]
fn blend_plane(plane: &mut [u8], stride: usize, x: usize, y: usize, w: usize, h: usize, value: &[u16], alpha: &[u8]) {
    for row in 0..h {
        let dst = &mut plane[(y + row) * stride + x..][..w];
        let (src, src_alpha) = (&value[row * w..][..w], &alpha[row * w..][..w]);
        for ((d, &s), &a) in dst.iter_mut().zip(src).zip(src_alpha) {
            let mixed = s as u32 + (255 - a as u32) * *d as u32;
            *d = ((mixed + 127) / 255).min(255) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::draw::Rgba;

    const YUV420: PlanarYuv = PlanarYuv { chroma_shift: (1, 1), full_range: false, bt709: false };

    #[test]
    fn opaque_white_and_black_reach_the_range_ends_and_transparent_pixels_keep_the_frame() {
        let mut c = Canvas::new(4, 2);
        c.fill_rect(0.0, 0.0, 2.0, 2.0, Rgba::WHITE);
        c.fill_rect(2.0, 0.0, 1.0, 2.0, Rgba::BLACK);
        let panel = YuvPanel::new(&c, YUV420);
        let (mut y, mut u, mut v) = (vec![77u8; 6 * 4], vec![90u8; 3 * 2], vec![200u8; 3 * 2]);
        panel.blend([(&mut y, 6), (&mut u, 3), (&mut v, 3)], 2, 2, YUV420);
        // Row 2 of the frame: two untouched, white, white, black, untouched (transparent panel pixel).
        assert_eq!(&y[12..18], &[77, 77, 235, 235, 16, 77]);
        assert_eq!(&y[0..12], &[77; 12], "rows above the panel untouched");
        // White's chroma is neutral.
        assert_eq!(u[4], 128);
        assert_eq!(v[4], 128);
        assert_eq!(&u[..3], &[90, 90, 90]);
    }

    #[test]
    fn half_transparent_pixels_mix() {
        let mut c = Canvas::new(2, 2);
        c.fill_rect(0.0, 0.0, 2.0, 2.0, Rgba(255, 255, 255, 128));
        let full = PlanarYuv { chroma_shift: (0, 0), full_range: true, bt709: true };
        let panel = YuvPanel::new(&c, full);
        let (mut y, mut u, mut v) = (vec![0u8; 4], vec![128u8; 4], vec![128u8; 4]);
        panel.blend([(&mut y, 2), (&mut u, 2), (&mut v, 2)], 0, 0, full);
        assert!(y.iter().all(|&p| p == 128), "{y:?}");
        assert!(u.iter().all(|&p| p == 128));
    }
}
