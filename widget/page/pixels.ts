/**
 * Counting what a WebGL scene drew, from a screenshot: the PNG is decoded by the page's own browser
 * (no image library on the Node side). Node side; the counting runs in the page.
 */
import type { Page } from 'playwright-core';

export interface PixelCount {
  /** Pixels clearly coloured: not white, grey or black (channel spread over 48). */
  coloured: number;
  total: number;
  /** Distinct 30° hue buckets among the coloured pixels: viridis spans purple, blue, green and yellow. */
  hues: number;
}

/** A screenshot of the view's 3-D scene, left of its colour bar: the pixels WebGL drew. */
export async function sceneScreenshot(page: Page): Promise<Buffer> {
  const box = (await page.locator('.ct-view .ct-scene').boundingBox())!;
  return page.screenshot({ clip: { x: box.x + 2, y: box.y + 2, width: box.width * 0.84, height: box.height - 4 } });
}

export async function colouredPixels(page: Page, png: Buffer): Promise<PixelCount> {
  return page.evaluate(async (b64: string) => {
    const w = globalThis as any;
    const img = new w.Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    const c = w.document.createElement('canvas');
    [c.width, c.height] = [img.width, img.height];
    const g = c.getContext('2d');
    g.drawImage(img, 0, 0);
    const d: Uint8ClampedArray = g.getImageData(0, 0, c.width, c.height).data;
    let coloured = 0;
    const hues = new Set<number>();
    for (let i = 0; i < d.length; i += 4) {
      const [r, gr, b] = [d[i], d[i + 1], d[i + 2]];
      const max = Math.max(r, gr, b);
      const min = Math.min(r, gr, b);
      if (max - min > 48) {
        coloured++;
        const h = max === r ? ((gr - b) / (max - min) + 6) % 6 : max === gr ? (b - r) / (max - min) + 2 : (r - gr) / (max - min) + 4;
        hues.add(Math.floor(h * 2));
      }
    }
    return { coloured, total: d.length / 4, hues: hues.size };
  }, png.toString('base64'));
}
