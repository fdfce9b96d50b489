// COCO compressed RLE (pycocotools' string form) decoded in the browser: counts alternate 0-runs and 1-runs
// over the pixels in column-major order.
"use strict";

function decodeRle(rle) {
  const [height, width] = rle.size;
  const s = rle.counts;
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = 1;
    while (more) {
      const c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20;
      p++; k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  const mask = new Uint8Array(width * height);  // row-major, for ImageData
  let index = 0, value = 0;
  for (const run of counts) {
    if (value) {
      for (let i = index; i < index + run; i++) mask[(i % height) * width + Math.floor(i / height)] = 1;
    }
    index += run;
    value = 1 - value;
  }
  return { width, height, data: mask };
}

if (typeof module !== "undefined") module.exports = { decodeRle };
