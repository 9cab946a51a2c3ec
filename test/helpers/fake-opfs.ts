// An in-memory stand-in for the origin private file system (File System Standard,
// https://fs.spec.whatwg.org/), with the behaviour the OPFS cache relies on: getFileHandle /
// getDirectoryHandle with {create}, NotFoundError / TypeMismatchError DOMExceptions, removeEntry
// with {recursive} (InvalidModificationError on a non-empty folder without it), entries(), and
// writable streams whose data reaches the file only on close() (abort() discards it), as the
// standard's swap-file model has it. `crash()` drops every open writable without closing it.
import type { OpfsDirectory, OpfsFile, OpfsWritable } from '../../src/io/cache.ts';

interface FileNode { kind: 'file'; data: Uint8Array; modified: number }
interface DirNode { kind: 'directory'; children: Map<string, FileNode | DirNode> }

export interface FakeOpfs {
  root: OpfsDirectory;
  /** forgets open writables, as a closed tab does: their data never reaches the files */
  crash(): void;
  /** total bytes in files */
  bytes(): number;
  /** every file path, sorted */
  paths(): string[];
}

export function fakeOpfs(): FakeOpfs {
  const top: DirNode = { kind: 'directory', children: new Map() };
  const open = new Set<{ dead: boolean }>();
  let clock = 1_700_000_000_000;

  const checkName = (name: string) => {
    if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\\')) {
      throw new TypeError(`Name is not allowed: ${JSON.stringify(name)}`);
    }
  };

  function fileHandle(node: FileNode, name: string): OpfsFile {
    return {
      async getFile() {
        return new File([node.data.slice()], name, { lastModified: node.modified });
      },
      async createWritable(options) {
        let buf = options?.keepExistingData ? node.data.slice() : new Uint8Array(0);
        const state = { dead: false };
        open.add(state);
        const w: OpfsWritable = {
          async write(data) {
            if (state.dead) throw new DOMException('The stream was closed.', 'InvalidStateError');
            const next = new Uint8Array(buf.length + data.length);
            next.set(buf);
            next.set(data, buf.length);
            buf = next;
          },
          async close() {
            if (state.dead) throw new DOMException('The stream was closed.', 'InvalidStateError');
            state.dead = true;
            open.delete(state);
            node.data = buf;
            node.modified = ++clock;
          },
          async abort() {
            state.dead = true;
            open.delete(state);
          },
        };
        return w;
      },
    };
  }

  function dirHandle(node: DirNode): OpfsDirectory {
    return {
      async getDirectoryHandle(name, options) {
        checkName(name);
        let c = node.children.get(name);
        if (c?.kind === 'file') throw new DOMException(`${name} is a file`, 'TypeMismatchError');
        if (!c) {
          if (!options?.create) throw new DOMException(`${name} not found`, 'NotFoundError');
          c = { kind: 'directory', children: new Map() };
          node.children.set(name, c);
        }
        return dirHandle(c);
      },
      async getFileHandle(name, options) {
        checkName(name);
        let c = node.children.get(name);
        if (c?.kind === 'directory') throw new DOMException(`${name} is a directory`, 'TypeMismatchError');
        if (!c) {
          if (!options?.create) throw new DOMException(`${name} not found`, 'NotFoundError');
          c = { kind: 'file', data: new Uint8Array(0), modified: ++clock };
          node.children.set(name, c);
        }
        return fileHandle(c, name);
      },
      async removeEntry(name, options) {
        const c = node.children.get(name);
        if (!c) throw new DOMException(`${name} not found`, 'NotFoundError');
        if (c.kind === 'directory' && c.children.size && !options?.recursive) {
          throw new DOMException(`${name} is not empty`, 'InvalidModificationError');
        }
        node.children.delete(name);
      },
      async *entries() {
        for (const [name, c] of [...node.children]) yield [name, { kind: c.kind }] as [string, { kind: 'file' | 'directory' }];
      },
    };
  }

  const walk = (d: DirNode, prefix: string, out: Array<[string, FileNode]>) => {
    for (const [n, c] of d.children) {
      if (c.kind === 'file') out.push([prefix + n, c]);
      else walk(c, `${prefix}${n}/`, out);
    }
    return out;
  };

  return {
    root: dirHandle(top),
    crash() {
      for (const s of open) s.dead = true;
      open.clear();
    },
    bytes: () => walk(top, '', []).reduce((a, [, f]) => a + f.data.length, 0),
    paths: () => walk(top, '', []).map(([p]) => p).sort(),
  };
}
