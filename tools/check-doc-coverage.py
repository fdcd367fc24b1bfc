#!/usr/bin/python3
"""check-doc-coverage.py PEBBLE_H DOCS_DIR: the reference covers pebble.h.

Fails (exit 1) when a public name of the header has no entry in the
Sphinx sources (docs/*.rst, C domain): a PBL_EXTERN function
(.. c:function::), a typedef (.. c:type::, .. c:struct::, .. c:enum::),
a member of a public struct (.. c:member:: under its struct), a PBL_*
macro (.. c:macro::) or enumerator (.. c:enumerator::). Also fails when
a function's entry has another prototype than the header's, lacks one of
the fields :Thread:, :Ownership:, :Returns:, :Errors:, or when the docs
declare a pbl_/PBL_ name the header does not have. Names with two
underscores (pbl__, PBL__) are internal and skipped. Standard library
only, so /usr/bin/python3 runs it anywhere.
"""
import glob
import os
import re
import sys

FIELDS = (':Thread:', ':Ownership:', ':Returns:', ':Errors:')
DIRECTIVE = re.compile(
    r'^(\s*)\.\. c:(function|macro|type|struct|enum|enumerator|member)::'
    r'\s*(.*?)\s*$')


def strip_comments(text):
    """Removes /* */ and // comments, keeping line breaks."""
    text = re.sub(r'/\*.*?\*/',
                  lambda m: '\n' * m.group(0).count('\n'), text, flags=re.S)
    return re.sub(r'//[^\n]*', '', text)


def drop_attributes(text):
    """Removes __attribute__((...)), nested parentheses included."""
    while True:
        start = text.find('__attribute__')
        if start < 0:
            return text
        i = text.index('(', start)
        depth = 0
        for j in range(i, len(text)):
            depth += {'(': 1, ')': -1}.get(text[j], 0)
            if depth == 0:
                break
        text = text[:start] + text[j + 1:]


def normalize(decl):
    """One spelling of a prototype: no space next to punctuation."""
    decl = re.sub(r'\s+', ' ', decl).strip()
    return re.sub(r'\s*([(),*\[\]])\s*', r'\1', decl)


def public(name):
    return re.match(r'(pbl|PBL)_[A-Za-z0-9]', name) is not None


def last_identifier(decl):
    pointer = re.search(r'\(\s*\*\s*(\w+)\s*\)', decl)  # (*name)(...)
    if pointer:
        return pointer.group(1)
    names = re.findall(r'[A-Za-z_]\w*', decl.split('[')[0])
    return names[-1] if names else ''


def members(body):
    """Member names of a struct body."""
    names = []
    for decl in body.split(';'):
        decl = decl.strip()
        if not decl:
            continue
        parts = decl.split(',')
        names.append(last_identifier(parts[0]))
        names.extend(last_identifier(p) for p in parts[1:])
    return names


def read_header(path):
    with open(path, encoding='utf-8') as f:
        text = strip_comments(f.read())
    h = {'function': {}, 'macro': set(), 'type': set(), 'enumerator': set(),
         'member': set()}
    for name in re.findall(r'^\s*#\s*define\s+(\w+)', text, flags=re.M):
        if public(name):
            h['macro'].add(name)
    for name in re.findall(r'\bXX\(\s*(\w+)\s*,\s*-?\d+', text):
        h['enumerator'].add('PBL_' + name)
    # Declarations, preprocessor lines and macro bodies left out.
    code = '\n'.join(line for line in text.split('\n')
                     if not line.lstrip().startswith('#'))
    code = re.sub(r'\\\n', ' ', code)
    code = drop_attributes(code)
    for m in re.finditer(r'\bPBL_EXTERN\b([^;]*);', code):
        decl = m.group(1)
        name = re.search(r'(\w+)\s*\(', decl).group(1)
        h['function'][name] = normalize(decl)
    for m in re.finditer(r'\btypedef\b', code):
        depth, i = 0, m.end()
        while i < len(code) and (code[i] != ';' or depth):
            depth += {'{': 1, '}': -1}.get(code[i], 0)
            i += 1
        decl = code[m.end():i]
        if '{' in decl:
            body = decl[decl.index('{') + 1:decl.rindex('}')]
            name = last_identifier(decl[decl.rindex('}') + 1:])
            if re.match(r'\s*enum\b', decl):
                h['enumerator'].update(
                    e for e in re.findall(r'\b(\w+)\s*(?:=[^,]*)?(?:,|$)',
                                          body) if public(e))
            else:
                h['member'].update(name + '.' + n for n in members(body))
        else:
            name = last_identifier(decl)
        if public(name):
            h['type'].add(name)
    return h


def read_docs(docs_dir):
    """Entries of the C domain in every .rst file of docs_dir."""
    d = {'function': {}, 'macro': set(), 'type': set(), 'enumerator': set(),
         'member': set(), 'fields': {}, 'where': {}}
    for path in sorted(glob.glob(os.path.join(docs_dir, '*.rst'))):
        with open(path, encoding='utf-8') as f:
            lines = f.read().split('\n')
        scopes = []  # (indent, struct name)
        for n, line in enumerate(lines):
            m = DIRECTIVE.match(line)
            if not m:
                continue
            indent, kind, sig = len(m.group(1)), m.group(2), m.group(3)
            while scopes and scopes[-1][0] >= indent:
                scopes.pop()
            where = '%s:%d' % (os.path.basename(path), n + 1)
            if kind == 'function':
                name = re.search(r'(\w+)\s*\(', sig).group(1)
                d['function'][name] = normalize(sig)
                d['fields'][name] = entry_fields(lines, n, indent)
            elif kind == 'macro':
                name = re.match(r'\w+', sig).group(0)
                d['macro'].add(name)
            elif kind in ('type', 'struct', 'enum'):
                name = last_identifier(sig)
                d['type'].add(name)
                scopes.append((indent, name))
            elif kind == 'enumerator':
                name = sig.split('.')[-1]
                d['enumerator'].add(name)
            else:  # member: under its struct, or Struct.member
                name = last_identifier(sig)
                if '.' in sig:
                    name = re.search(r'(\w+)\.(\w+)', sig).group(0)
                elif scopes:
                    name = scopes[-1][1] + '.' + name
                d['member'].add(name)
            d['where'][name] = where
    return d


def entry_fields(lines, n, indent):
    """The fields of the entry that starts at line n."""
    found = set()
    for line in lines[n + 1:]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        found.update(f for f in FIELDS if line.strip().startswith(f))
    return found


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    h = read_header(sys.argv[1])
    d = read_docs(sys.argv[2])
    errors = []
    for kind in ('function', 'macro', 'type', 'enumerator', 'member'):
        for name in sorted(set(h[kind]) - set(d[kind])):
            errors.append('%s %s: no entry in the docs' % (kind, name))
        for name in sorted(set(d[kind]) - set(h[kind])):
            if public(name) or kind == 'member':
                errors.append('%s %s (%s): not in pebble.h' %
                              (kind, name, d['where'][name]))
    for name, proto in sorted(h['function'].items()):
        doc = d['function'].get(name)
        if doc is not None and doc != proto:
            errors.append('function %s (%s): the docs say\n    %s\n'
                          '  pebble.h says\n    %s' %
                          (name, d['where'][name], doc, proto))
        missing = [f for f in FIELDS if doc is not None and
                   f not in d['fields'][name]]
        if missing:
            errors.append('function %s (%s): no %s' %
                          (name, d['where'][name], ', '.join(missing)))
    for e in errors:
        print('check-doc-coverage: ' + e)
    counts = ', '.join('%d %ss' % (len(h[k]), k) for k in
                       ('function', 'type', 'macro', 'enumerator', 'member'))
    if errors:
        print('check-doc-coverage: %d problems (pebble.h: %s)' %
              (len(errors), counts))
        return 1
    print('check-doc-coverage: every public name of pebble.h has its '
          'entry (%s)' % counts)
    return 0


if __name__ == '__main__':
    sys.exit(main())
