// A minimal ZIP writer (stored, not compressed: PNG and JPEG are compressed already),
// so several cutouts download as one file without a library or a server round trip.
"use strict";

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n += 1) {
    let c = n;
    for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes) {
  let crc = 0xffffffff;
  for (const byte of bytes) crc = CRC_TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

// entries: [{name: string, data: Uint8Array}] -> a Blob of type application/zip
function makeZip(entries) {
  const encoder = new TextEncoder();
  const UTF8_NAMES = 0x0800;
  const DOS_DATE = (0 << 9) | (1 << 5) | 1; // 1980-01-01: no clock needed for a download
  const parts = [];
  const directory = [];
  let offset = 0;

  const header = (size, fill) => {
    const buffer = new Uint8Array(size);
    fill(new DataView(buffer.buffer));
    return buffer;
  };
  for (const entry of entries) {
    const name = encoder.encode(entry.name);
    const crc = crc32(entry.data);
    const size = entry.data.length;
    const common = (view, at) => {
      view.setUint16(at, 20, true); // version needed: 2.0
      view.setUint16(at + 2, UTF8_NAMES, true);
      view.setUint16(at + 4, 0, true); // stored
      view.setUint16(at + 6, 0, true); // time
      view.setUint16(at + 8, DOS_DATE, true);
      view.setUint32(at + 10, crc, true);
      view.setUint32(at + 14, size, true);
      view.setUint32(at + 18, size, true);
      view.setUint16(at + 22, name.length, true);
    };
    const local = header(30, (view) => {
      view.setUint32(0, 0x04034b50, true);
      common(view, 4);
    });
    directory.push(header(46, (view) => {
      view.setUint32(0, 0x02014b50, true);
      view.setUint16(4, 20, true); // made by: 2.0
      common(view, 6);
      view.setUint32(42, offset, true);
    }), name);
    parts.push(local, name, entry.data);
    offset += local.length + name.length + size;
  }
  const directorySize = directory.reduce((total, part) => total + part.length, 0);
  const end = header(22, (view) => {
    view.setUint32(0, 0x06054b50, true);
    view.setUint16(8, entries.length, true);
    view.setUint16(10, entries.length, true);
    view.setUint32(12, directorySize, true);
    view.setUint32(16, offset, true);
  });
  return new Blob([...parts, ...directory, end], { type: "application/zip" });
}
