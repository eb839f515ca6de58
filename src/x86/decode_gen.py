#!/usr/bin/env python3
"""Generates src/x86/decode_tables.c from src/x86/decode_insns.txt.

Run after editing decode_insns.txt:  python3 src/x86/decode_gen.py
The output is committed; the build does not need Python.

Each line of decode_insns.txt describes one instruction form:

    MAP OPCODE[+r] [CONDITION...] : ID[=name] [OPERAND...] [; FLAG...]

MAP: 1, 0f, 0f38, 0f3a, v0f, v0f38, v0f3a (VEX), 3dn (3DNow! suffix),
x8, x9, xa (XOP). CONDITION: /N (ModRM.reg), mem | reg (ModRM.mod),
rm=N, P=none|66|f3|f2 (mandatory prefix), m64 | !m64 (mode), W0 | W1,
L0 | L1, os16 | os32 | os64, as16 | as32 | as64, B0 | B1 (REX.B).
When several forms match, the one with the most conditions wins.

MAP also: e0f, e0f38, e0f3a, e5, e6 (EVEX). L conditions may name several
lengths (L12 = 256 or 512 bits).

OPERAND: a method letter and a size code, or a fixed register (AL, eAX, DX,
ES, ST0, XMM0, 1, ...), with an optional .suffix of access letters r w n
(default: first operand rw, others r) plus u (unsigned immediate), i
(implicit: not encoded). Methods: E G (ModRM r/m, reg: general registers),
M (memory only), R (r/m register, whatever mod says), I (immediate), J
(relative), O (moffs), A (far pointer), Z (register in the opcode), S C D
(segment, control, debug register in reg), P Q N (MMX), V W U (vector reg,
r/m, r/m register), H (VEX.vvvv vector), B (VEX.vvvv general register), L
(register in imm8[7:4]), K X (bnd, unused). Size codes are listed in SIZES;
kb..kq select opmask registers and tm AMX tiles instead of vector registers.

FLAG: isa names (sse2, avx, ...) and decoder flags (FLAGS): lock (LOCK
allowed with a memory destination), d64/f64 (64-bit default/forced operand
size), br cond str priv ser (HVP_X86_F_*), agen (address only: no segment
override), mpx, and for EVEX: bc (broadcast), er/sae (b with a register
operand), nz/nzm/nm (no zeroing / with memory destination / no masking at
all), km (mask required), el eb ew b2 (disp8*N element sizes), cplx
(destination must differ from the sources), mib (SIB required).
"""
import re
import sys
import os

HERE = os.path.dirname(os.path.abspath(__file__))

MAPS = ['1', '0f', '0f38', '0f3a', 'v0f', 'v0f38', 'v0f3a', '3dn', 'x8', 'x9', 'xa', 'e0f', 'e0f38',
        'e0f3a', 'e5', 'e6']

# Dimensions in split order, with their child count.
DIMS = [('mode', 2), ('pfx', 4), ('reg', 8), ('mod', 2), ('rm', 8), ('w', 2), ('l', 3),
        ('osz', 3), ('asz', 3), ('b', 2)]
KIND = {'leaf': 1, 'mode': 2, 'pfx': 3, 'reg': 4, 'mod': 5, 'rm': 6, 'w': 7, 'l': 8,
        'osz': 9, 'asz': 10, 'b': 11, 'oszd64': 12}

METHODS = 'E G M R I J O A Z S C D P Q N V W U H L T K B X'.split()
METHOD_IDS = {m: i + 1 for i, m in enumerate(METHODS)}
# fixed operands: method id, number, size code
FIXED_METHODS = {'FGPR': 30, 'FSEG': 31, 'FST': 32, 'FXMM': 33, 'ONE': 34}

SIZES = ['b', 'w', 'd', 'q', 'v', 'z', 'y', 'dq', 'qq', 'x', 't', 'p', 's', 'n', 'a', 'h',
         'ss', 'sd', 'ps', 'pd', 'pi', 'si', 'c', 'e', 'f', '0', 'st', 'fs', 'fe', 'vq', 'zz',
         'k', 'xq', 'xh', 'xd', 'xw', 'xb', 'dw', 'qd', 'as', 'xs', 'fx', 'bm', 'bx', 'cl', 'k3', 'k4', 'mdup', 'vxd', 'vxq', 'vhq', 'kb', 'kw', 'kd', 'kq', '4', 'tm']
SIZE_IDS = {s: i + 1 for i, s in enumerate(SIZES)}

FIXED = {
    'AL': ('FGPR', 0, 'b'), 'CL': ('FGPR', 1, 'b'), 'DL': ('FGPR', 2, 'b'), 'BL': ('FGPR', 3, 'b'),
    'AH': ('FGPR', 4, 'b'), 'AX': ('FGPR', 0, 'w'), 'DX': ('FGPR', 2, 'w'), 'CX': ('FGPR', 1, 'w'),
    'EAX': ('FGPR', 0, 'd'), 'ECX': ('FGPR', 1, 'd'), 'EDX': ('FGPR', 2, 'd'),
    'eAX': ('FGPR', 0, 'z'), 'rAX': ('FGPR', 0, 'v'), 'rCX': ('FGPR', 1, 'v'),
    'rDX': ('FGPR', 2, 'v'), 'RAX': ('FGPR', 0, 'q'), 'RCX': ('FGPR', 1, 'q'), 'RDX': ('FGPR', 2, 'q'), 'aAX': ('FGPR', 0, 'as'),
    'aCX': ('FGPR', 1, 'as'),
    'ES': ('FSEG', 0, 'w'), 'CS': ('FSEG', 1, 'w'), 'SS': ('FSEG', 2, 'w'), 'DS': ('FSEG', 3, 'w'),
    'FS': ('FSEG', 4, 'w'), 'GS': ('FSEG', 5, 'w'),
    'ST0': ('FST', 0, 't'), 'XMM0': ('FXMM', 0, 'dq'), '1': ('ONE', 1, 'b'),
}

FLAGS = {
    'modrm': 0x0001, 'd64': 0x0002, 'f64': 0x0004, 'lock': 0x0008, 'mp66': 0x0010,
    'br': 0x0020, 'cond': 0x0040, 'str': 0x0080, 'priv': 0x0100, 'ser': 0x0200,
    'vvvv': 0x0400, 'is4': 0x0800, 'nolockreg': 0x1000, 'rep': 0x2000, 'byte': 0x4000,
    'xacq': 0x8000, 'os66': 0, 'agen': 0x10000, 'mpx': 0x20000, 'bc': 0x40000, 'er': 0x80000, 'sae': 0x100000,
    'nzm': 0x200000, 'nz': 0x400000, 'km': 0x800000, 'nm': 0x1000000, 'el': 0x2000000, 'eb': 0x4000000, 'ew': 0x8000000, 'b2': 0x10000000, 'vsib': 0x20000000, 'cplx': 0x40000000, 'mib': 0x80000000,
}
ISAS = ['base', 'x87', 'cmov', 'mmx', 'sse', 'sse2', 'sse3', 'ssse3', 'sse41', 'sse42', 'sse4a',
        'popcnt', 'lzcnt', 'bmi1', 'bmi2', 'adx', 'movbe', 'cx16', 'aes', 'pclmul', 'sha',
        'rdrand', 'rdseed', 'fsgsbase', 'xsave', 'avx', 'avx2', 'fma', 'f16c', 'avx512', 'vmx',
        'svm', 'other']


class Entry:
    pass


def parse_operand(tok, idx):
    acc = None
    sfx = ''
    if '.' in tok:
        tok, sfx = tok.split('.', 1)
    fl = 0
    if 'u' in sfx:
        fl |= 0x10
    if 'i' in sfx:
        fl |= 0x20
    a = ''.join(c for c in sfx if c in 'rwn')
    if a == '':
        a = 'rw' if idx == 0 else 'r'
    if 'r' in a:
        fl |= 1
    if 'w' in a:
        fl |= 2
    if tok in FIXED:
        m, n, s = FIXED[tok]
        if m in ('ONE',):
            fl |= 0x20
        return (FIXED_METHODS[m], SIZE_IDS[s], fl, n)
    if tok.startswith('STi'):
        return (FIXED_METHODS['FST'], SIZE_IDS['t'], fl | 0x40, 0)
    m = re.match(r'^([A-Z])([a-z0-9]+)$', tok)
    if not m or m.group(1) not in METHOD_IDS or m.group(2) not in SIZE_IDS:
        raise SystemExit('bad operand %r' % tok)
    return (METHOD_IDS[m.group(1)], SIZE_IDS[m.group(2)], fl, 0)


def parse(path):
    entries = []
    for lineno, line in enumerate(open(path), 1):
        line = line.split('#', 1)[0].strip()
        if not line:
            continue
        head, _, rest = line.partition(':')
        flags = []
        if ';' in rest:
            rest, _, fl = rest.partition(';')
            flags = fl.split()
        hw = head.split()
        rw = rest.split()
        mp, opc = hw[0], hw[1]
        if mp not in MAPS:
            raise SystemExit('%d: bad map %s' % (lineno, mp))
        plus = opc.endswith('+r')
        opc = int(opc[:-2] if plus else opc, 16)
        cond = {}
        for c in hw[2:]:
            if c.startswith('/'):
                cond['reg'] = int(c[1:])
            elif c == 'mem':
                cond['mod'] = 0
            elif c == 'reg':
                cond['mod'] = 1
            elif c.startswith('rm='):
                cond['rm'] = int(c[3:])
            elif c.startswith('P='):
                cond['pfx'] = ['none', '66', 'f3', 'f2'].index(c[2:])
            elif c == 'm64':
                cond['mode'] = 1
            elif c == '!m64':
                cond['mode'] = 0
            elif c in ('W0', 'W1'):
                cond['w'] = int(c[1])
            elif re.match(r'^L[012]+$', c):
                cond['l'] = frozenset(int(x) for x in c[1:])
            elif c in ('B0', 'B1'):
                cond['b'] = int(c[1])
            elif c in ('os16', 'os32', 'os64'):
                cond['osz'] = ['os16', 'os32', 'os64'].index(c)
            elif c in ('as16', 'as32', 'as64'):
                cond['asz'] = ['as16', 'as32', 'as64'].index(c)
            else:
                raise SystemExit('%d: bad condition %s' % (lineno, c))
        ident = rw[0]
        if '=' in ident:
            ident, name = ident.split('=')
        else:
            name = ident.lower()
        ops = [parse_operand(t, i) for i, t in enumerate(rw[1:])]
        fl = 0
        isa = 0
        for f in flags:
            if f.startswith('isa='):
                isa = ISAS.index(f[4:])
            elif f in ISAS:
                isa = ISAS.index(f)
            elif f in FLAGS:
                fl |= FLAGS[f]
            else:
                raise SystemExit('%d: bad flag %s' % (lineno, f))
        if any(k in cond for k in ('reg', 'mod', 'rm')) or any(
                o[0] in [METHOD_IDS[x] for x in 'EGMRSCDPQNVWUTKX'] for o in ops) or (
                    ops and any(o[2] & 0x40 for o in ops)):
            fl |= FLAGS['modrm']
        if any(o[1] in (SIZE_IDS['vxd'], SIZE_IDS['vxq'], SIZE_IDS['vhq']) for o in ops):
            fl |= FLAGS['vsib']
        if any(o[0] in (METHOD_IDS['H'], METHOD_IDS['B']) for o in ops):
            fl |= FLAGS['vvvv']
        if cond.get('pfx') == 1 and 'os66' not in flags:
            fl |= FLAGS['mp66']
        if mp[0] in 'vxe':
            fl |= FLAGS['modrm'] if mp != 'v0f' or opc != 0x77 else 0
        opcs = range(opc, opc + 8) if plus else [opc]
        for o in opcs:
            e = Entry()
            e.map, e.opc, e.cond, e.ident, e.name = mp, o, dict(cond), ident, name
            e.ops, e.flags, e.isa, e.line = ops, fl, isa, lineno
            entries.append(e)
    return entries


def match(c, v):
    return c is None or (v in c if isinstance(c, frozenset) else c == v)


class Gen:
    def __init__(self):
        self.nodes = []
        self.leaves = []
        self.leaf_ix = {}

    def leaf(self, e):
        if e.ident == 'INVALID':
            return 0  # an explicitly invalid form is the invalid node
        key = (e.ident, tuple(e.ops), e.flags, e.isa)
        if key not in self.leaf_ix:
            self.leaf_ix[key] = len(self.leaves)
            self.leaves.append(e)
        return (KIND['leaf'] << 24) | self.leaf_ix[key]

    def build(self, ents, d0=0):
        if not ents:
            return 0
        for di in range(d0, len(DIMS)):
            dim, n = DIMS[di]
            if any(dim in e.cond for e in ents):
                kids = []
                for v in range(n):
                    sub = [e for e in ents if match(e.cond.get(dim), v)]
                    kids.append(self.build(sub, di + 1))
                if all(k == kids[0] for k in kids):
                    return kids[0]
                base = len(self.nodes)
                self.nodes.extend(kids)
                kind = KIND[dim]
                if dim == 'osz' and all(e.flags & FLAGS['d64'] for e in ents):
                    kind = KIND['oszd64']
                return (kind << 24) | base
        best = max(len(e.cond) for e in ents)
        top = [e for e in ents if len(e.cond) == best]
        if len(top) > 1:
            # a mandatory prefix outranks other conditions
            top = [e for e in top if 'pfx' in e.cond] or top
        if len(top) > 1:
            raise SystemExit('ambiguous: lines %s' % [e.line for e in top])
        return self.leaf(top[0])


def main():
    entries = parse(os.path.join(HERE, 'decode_insns.txt'))
    g = Gen()
    roots = []
    for mi, mp in enumerate(MAPS):
        row = []
        for opc in range(256):
            ents = [e for e in entries if e.map == mp and e.opc == opc]
            row.append(g.build(ents))
        roots.append(row)
    # op ids must exist in x86_ops.def
    defs = open(os.path.join(HERE, '..', '..', 'include', 'hvp', 'x86_ops.def')).read()
    known = dict(re.findall(r'HVP_X86_OP\((\w+),\s*"([^"]*)"\)', defs))
    missing = []
    for e in g.leaves:
        if e.ident in known and known[e.ident] != e.name:
            raise SystemExit('%s is "%s" in x86_ops.def' % (e.ident, known[e.ident]))
        if e.ident not in known and (e.ident, e.name) not in missing:
            missing.append((e.ident, e.name))
    if missing:
        with open(os.path.join(HERE, '..', '..', 'include', 'hvp', 'x86_ops.def'), 'a') as f:
            for ident, name in missing:
                f.write('HVP_X86_OP(%s, "%s")\n' % (ident, name))
    out = []
    out.append('/* Generated by decode_gen.py from decode_insns.txt: do not edit. */')
    out.append('#include "decode_tables.h"\n')
    out.append('const uint32_t hvp_dec_root[HVP_DEC_NMAPS][256] = {')
    for row in roots:
        out.append('    {')
        for i in range(0, 256, 8):
            out.append('        ' + ' '.join('0x%08x,' % x for x in row[i:i + 8]))
        out.append('    },')
    out.append('};\n')
    out.append('const uint32_t hvp_dec_nodes[%d] = {' % max(1, len(g.nodes)))
    for i in range(0, len(g.nodes), 8):
        out.append('    ' + ' '.join('0x%08x,' % x for x in g.nodes[i:i + 8]))
    out.append('};\n')
    out.append('const struct hvp_dec_leaf hvp_dec_leaves[%d] = {' % len(g.leaves))
    for e in g.leaves:
        ops = ', '.join('{%d, %d, 0x%02x, %d}' % o for o in e.ops)
        memop = 0
        for i, o in enumerate(e.ops):
            if o[0] in [METHOD_IDS[x] for x in 'EMWQX']:
                memop = i + 1
                break
        out.append('    {HVP_X86_OP_%s, %d, %d, 0x%05x, {%s}, %d},' % (e.ident, e.isa, len(e.ops),
                                                                 e.flags, ops, memop))
    out.append('};')
    hdr = ['/* Generated by decode_gen.py: do not edit. Types of the decoder tables. */',
           '#ifndef HVP_X86_DECODE_TABLES_H', '#define HVP_X86_DECODE_TABLES_H',
           '#include <stdint.h>', '#include "hvp/x86.h"', '',
           '#define HVP_DEC_NMAPS %d' % len(MAPS)]
    for i, mp in enumerate(MAPS):
        hdr.append('#define HVP_DEC_MAP_%s %d' % (mp.upper(), i))
    for k, v in KIND.items():
        hdr.append('#define HVP_DEC_K_%s %d' % (k.upper(), v))
    for m, v in METHOD_IDS.items():
        hdr.append('#define HVP_DEC_M_%s %d' % (m, v))
    for m, v in FIXED_METHODS.items():
        hdr.append('#define HVP_DEC_M_%s %d' % (m, v))
    for s_, v in SIZE_IDS.items():
        hdr.append('#define HVP_DEC_S_%s %d' % (s_.upper() if s_ != '0' else 'ZERO', v))
    for f_, v in FLAGS.items():
        hdr.append('#define HVP_DEC_F_%s 0x%05x' % (f_.upper(), v))
    hdr += ['#define HVP_DEC_O_R 0x01', '#define HVP_DEC_O_W 0x02', '#define HVP_DEC_O_U 0x10',
            '#define HVP_DEC_O_I 0x20', '#define HVP_DEC_O_STI 0x40', '',
            '/* One operand of a form: addressing method, size code, HVP_DEC_O_*, number. */',
            'struct hvp_dec_opnd {', '    uint8_t m, s, f, n;', '};', '',
            '/* One instruction form (a leaf of the decode tree). */',
            'struct hvp_dec_leaf {', '    uint16_t op;', '    uint8_t isa;', '    uint8_t nops;',
            '    uint32_t flags; /* HVP_DEC_F_* */', '    struct hvp_dec_opnd o[5];',
            '    uint8_t memop; /* 1 + index of the ModRM memory-capable operand, 0 if none */', '};', '',
            '/* Node: kind << 24 | index; 0 = invalid. Children of a split are',
            ' * consecutive in hvp_dec_nodes. */',
            '#define HVP_DEC_HIDDEN __attribute__((visibility("hidden"))) /* no GOT loads under -fPIC */',
            'extern const uint32_t hvp_dec_root[HVP_DEC_NMAPS][256] HVP_DEC_HIDDEN;',
            'extern const uint32_t hvp_dec_nodes[] HVP_DEC_HIDDEN;',
            'extern const struct hvp_dec_leaf hvp_dec_leaves[] HVP_DEC_HIDDEN;', '', '#endif']
    with open(os.path.join(HERE, 'decode_tables.h'), 'w') as f:
        f.write('\n'.join(hdr) + '\n')
    with open(os.path.join(HERE, 'decode_tables.c'), 'w') as f:
        f.write('\n'.join(out) + '\n')
    print('%d entries, %d leaves, %d nodes' % (len(entries), len(g.leaves), len(g.nodes)))


if __name__ == '__main__':
    main()
