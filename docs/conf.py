# Sphinx configuration of pebble for C's reference, guide and man pages.
# Built by meson (-Ddocs=true; docs/meson.build) with warnings as errors.
import os
import re

from sphinx.errors import ConfigError
from sphinx.util import logging

here = os.path.dirname(os.path.abspath(__file__))

project = 'pebble for C'
author = 'the pebble for C authors'
copyright = '2026, ' + author
with open(os.path.join(here, '..', 'meson.build'), encoding='utf-8') as f:
    release = re.search(r"version:\s*'([^']+)'", f.read()).group(1)
version = '.'.join(release.split('.')[:2])

primary_domain = 'c'
highlight_language = 'c'
exclude_patterns = ['_build']
# Every reference must resolve; these are libuv's and the C library's.
nitpicky = True
nitpick_ignore = [('c:identifier', name) for name in (
    'bool', 'size_t', 'int64_t', 'uint64_t', 'intptr_t', 'uv_loop_t')]

html_theme = 'alabaster'
html_theme_options = {'description': 'thread and process tasks as futures '
                                      'on a libuv loop'}

# The design page (docs/design.md, Markdown) joins the site and the man
# pages once it exists; until then nothing refers to it.
have_design = os.path.exists(os.path.join(here, 'design.md'))
extensions = []
if have_design:
    try:
        import myst_parser  # noqa: F401 (Debian: python3-myst-parser)
    except ImportError as e:
        raise ConfigError('docs/design.md needs MyST: '
                          'apt install python3-myst-parser') from e
    extensions.append('myst_parser')
    myst_heading_anchors = 6  # [text](#a-heading), as on a forge

# Man pages: pebble(3) and one page per module; build-finished below adds
# a one-line page per function, type and macro (pbl_task_get.3:
# ".so man3/pebble-tasks.3"), so that `man pbl_task_get` opens its module.
man_make_section_directory = False
pages = [  # (source, man page, what its NAME line says)
    ('overview', 'pebble', 'thread and process tasks as futures on a '
     'libuv loop'),
    ('errors', 'pebble-errors', 'error codes of pebble for C: '
     'pbl_strerror, pbl_err_name, PBL_E*'),
    ('binding', 'pebble-binding', 'binding pebble to a uv loop: '
     'pbl_loop_new, pbl_loop_close, pbl_default_loop'),
    ('tasks', 'pebble-tasks', 'tasks (futures): pbl_task_get, '
     'pbl_task_wait, pbl_task_cancel, pbl_task_on_done, accessors'),
    ('thread-tasks', 'pebble-threads', 'thread tasks: pbl_thread, '
     'pbl_fail, pbl_cancelled'),
    ('process-tasks', 'pebble-processes', 'process tasks and workers: '
     'pbl_process, PBL_PROCESS_FN, pbl_worker_main'),
    ('commands', 'pebble-commands', 'commands: pbl_spawn and their '
     'captured output'),
    ('pools', 'pebble-pools', 'thread and process pools: '
     'pbl_thread_pool_new, pbl_process_pool_new, pbl_pool_*'),
    ('server-guide', 'pebble-server', 'guide: pebble in a libuv server'),
    ('examples', 'pebble-examples', "the seed's four examples"),
]
if have_design:
    pages.append(('design', 'pebble-design', 'the design of pebble for C'))
man_pages = [(doc, name, what, [author], 3) for doc, name, what in pages]

# Objects that get a redirect page of their own.
redirected = ('function', 'macro', 'type', 'struct', 'enum', 'enumerator')
logger = logging.getLogger(__name__)


def add_design_page(app, docname, source):
    """Appends the design page to the index's table of contents."""
    if docname == 'index' and have_design:
        source[0] += '\n.. toctree::\n   :caption: Design\n\n   design\n'


def design_anchors(app, docname, source):
    """Points design.md's links to its <a id="X"></a> anchors at headings.

    MyST makes anchors of headings only: a link (#X) to a raw HTML anchor
    that follows a heading is pointed at that heading's anchor instead.
    """
    if docname != 'design':
        return
    from mdit_py_plugins.anchors.index import slugify, unique_slug
    slugs, ids, heading, fence = set(), {}, None, False
    for line in source[0].split('\n'):
        if re.match(r'\s*(```|~~~)', line):
            fence = not fence
        m = None if fence else re.match(r'#{1,6}\s+(.*?)[\s#]*$', line)
        anchor = re.fullmatch(r'\s*<a id="([^"]+)"></a>\s*', line)
        if m:
            heading = unique_slug(slugify(re.sub(r'[`*]', '', m.group(1))),
                                  slugs)
        elif anchor and heading:
            ids[anchor.group(1)] = heading
        elif line.strip():
            heading = None
    for name, slug in ids.items():
        source[0] = source[0].replace('](#%s)' % name, '](#%s)' % slug)


def write_man_redirects(app, exc):
    """Writes NAME.3 as ".so man3/MODULE.3" for each C object."""
    if exc is not None or app.builder.name != 'man':
        return
    pages = {doc: (name, sec) for doc, name, _, _, sec in app.config.man_pages}
    count = 0
    for name, _, objtype, docname, _, _ in app.env.get_domain('c').get_objects():
        if objtype not in redirected:
            continue
        name = name.split('.')[-1]  # pbl_task_state.PBL_DONE -> PBL_DONE
        if docname not in pages:
            logger.warning('%s is in %s, which has no man page', name,
                           docname)
            continue
        page, sec = pages[docname]
        with open(os.path.join(app.outdir, '%s.%d' % (name, sec)), 'w',
                  encoding='utf-8') as f:
            f.write('.so man%d/%s.%d\n' % (sec, page, sec))
        count += 1
    logger.info('man: %d redirect pages', count)


def setup(app):
    app.connect('source-read', add_design_page)
    app.connect('source-read', design_anchors)
    app.connect('build-finished', write_man_redirects)
