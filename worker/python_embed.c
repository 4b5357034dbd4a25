/*  python_embed — emq_python.so, the plugin that holds the embedded CPython
    (see python.h). Built with python3-config --embed and loaded by a worker
    on its first python job; never linked into a program.

    Most of the work is Python, in s_runner below: it is run once into a
    private namespace when the interpreter starts and provides setup() and
    run(). C only starts the interpreter (no signal handlers of its own: a
    worker's signals stay the job manager's business), passes strings in
    and copies bytes out. The interpreter is never finalised: the worker
    leaves with _exit(), and a job that broke the interpreter kills its
    worker, which the job manager replaces.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "emqp.h"
#include "python.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef EMQ_PYTHON_SONAME
#error "build with -DEMQ_PYTHON_SONAME=\"libpython3.X.so.1.0\""
#endif
#ifndef EMQ_PYTHON_HOME
#error "build with -DEMQ_PYTHON_HOME=\"<sys.base_prefix>\""
#endif

//  The job runner. run() returns (status, bytes): 0 ok with the reply JSON
//  as EventMQ's worker encodes it (json.dumps({"value": ...}), its default
//  separators), 1 failed with the traceback, 2 refused by the allow-list.
//  setup() returns None, or (fatal, text): a setup hook that raises is
//  reported and the worker goes on without it (fatal False), as EventMQ's
//  worker does; entry and exit hooks that cannot be found are fatal.
static const char s_runner[] =
    "import fnmatch, importlib, json, sys, traceback\n"
    "_allow = ()\n"
    "_entry = _exit = None\n"
    "def _resolve(spec):\n"
    "    module, sep, name = spec.partition(':')\n"
    "    if not sep:\n"
    "        module, _, name = spec.rpartition('.')\n"
    "    return getattr(importlib.import_module(module), name)\n"
    "def _flush():\n"
    "    for stream in (sys.stdout, sys.stderr):\n"
    "        try:\n"
    "            stream.flush()\n"
    "        except Exception:\n"
    "            pass\n"
    "def setup(paths, allow, setup_spec, entry_spec, exit_spec):\n"
    "    global _allow, _entry, _exit\n"
    "    sys.path[0:0] = list(paths)\n"
    "    _allow = tuple(allow)\n"
    "    try:\n"
    "        _entry = _resolve(entry_spec) if entry_spec else None\n"
    "        _exit = _resolve(exit_spec) if exit_spec else None\n"
    "    except BaseException:\n"
    "        return True, traceback.format_exc()\n"
    "    try:\n"
    "        if setup_spec:\n"
    "            _resolve(setup_spec)()\n"
    "    except BaseException:\n"
    "        return False, traceback.format_exc()\n"
    "    finally:\n"
    "        _flush()\n"
    "def _out(status, text):\n"
    "    return status, text.encode('utf-8', 'backslashreplace')\n"
    "def run(path, name, args):\n"
    "    module_name, _, class_name = path.partition(':')\n"
    "    if not any(fnmatch.fnmatchcase(module_name, p) for p in _allow):\n"
    "        return _out(2, 'module %s is not allowed (python_allow)' % module_name)\n"
    "    a = json.loads(args)\n"
    "    try:\n"
    "        if _entry is not None:\n"
    "            _entry()\n"
    "        try:\n"
    "            target = importlib.import_module(module_name)\n"
    "            if class_name:\n"
    "                target = getattr(target, class_name)(*a['class_args'],\n"
    "                                                     **a['class_kwargs'])\n"
    "            value = getattr(target, name)(*a['args'], **a['kwargs'])\n"
    "        finally:\n"
    "            if _exit is not None:\n"
    "                _exit()\n"
    "    except BaseException:\n"
    "        return _out(1, traceback.format_exc())\n"
    "    finally:\n"
    "        _flush()\n"
    "    try:\n"
    "        return _out(0, json.dumps({'value': value}))\n"
    "    except (TypeError, ValueError, RecursionError) as e:\n"
    "        return _out(1, 'the return value cannot be encoded as JSON: %s' % e)\n";

static PyObject *s_run;  // the runner's run(), once started

//  The pending exception as text (its str()), clearing it; malloc'd.
static char *
s_exception_text (void)
{
    PyObject *type, *value, *trace;
    PyErr_Fetch (&type, &value, &trace);
    PyObject *text = value ? PyObject_Str (value) : NULL;
    const char *utf8 = text ? PyUnicode_AsUTF8 (text) : NULL;
    char *copy = strdup (utf8 ? utf8 : "unknown Python error");
    PyErr_Clear ();
    Py_XDECREF (text);
    Py_XDECREF (type);
    Py_XDECREF (value);
    Py_XDECREF (trace);
    return copy;
}

static PyObject *
s_list (char *const *items, size_t count)
{
    PyObject *list = PyList_New ((Py_ssize_t) count);
    for (size_t i = 0; list && i < count; i++) {
        PyObject *item = PyUnicode_DecodeFSDefault (items[i]);
        if (!item) {
            Py_DECREF (list);
            return NULL;
        }
        PyList_SET_ITEM (list, (Py_ssize_t) i, item);
    }
    return list;
}

int emq_python_init (const emq_python_config_t *config, char *err, size_t errlen,
                     char *warning, size_t warninglen);
void emq_python_call (emq_python_call_t *call);

int
emq_python_init (const emq_python_config_t *config, char *err, size_t errlen,
                 char *warning, size_t warninglen)
{
    *warning = 0;
    //  Extension modules (lib-dynload) are not linked with libpython and
    //  expect its symbols to be global; we were loaded RTLD_LOCAL.
    if (!dlopen (EMQ_PYTHON_SONAME, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL)) {
        snprintf (err, errlen, "cannot make %s global: %s", EMQ_PYTHON_SONAME,
                  dlerror ());
        return -1;
    }
    PyConfig pyconfig;
    PyConfig_InitPythonConfig (&pyconfig);
    pyconfig.install_signal_handlers = 0;
    pyconfig.parse_argv = 0;
    PyStatus status = PyStatus_Ok ();
    //  The interpreter would look for its library next to the first
    //  python3 on PATH, which need not be the one we were built with.
    if (!getenv ("PYTHONHOME"))
        status = PyConfig_SetBytesString (&pyconfig, &pyconfig.home, EMQ_PYTHON_HOME);
    if (!PyStatus_Exception (status))
        status = Py_InitializeFromConfig (&pyconfig);
    PyConfig_Clear (&pyconfig);
    if (PyStatus_Exception (status)) {
        snprintf (err, errlen, "cannot start Python: %s",
                  status.err_msg ? status.err_msg : "unknown error");
        return -1;
    }
    PyObject *globals = PyDict_New ();
    PyObject *code = NULL, *done = NULL, *paths = NULL, *allow = NULL, *failure = NULL;
    //  Compiled under a name of its own, so tracebacks say where they went
    //  through emq ("<emq runner>") rather than "<string>".
    if (!globals || PyDict_SetItemString (globals, "__builtins__", PyEval_GetBuiltins ())
        || !(code = Py_CompileString (s_runner, "<emq runner>", Py_file_input))
        || !(done = PyEval_EvalCode (code, globals, globals))
        || !(paths = s_list (config->path, config->path_count))
        || !(allow = s_list (config->allow, config->allow_count))) {
        char *text = s_exception_text ();
        snprintf (err, errlen, "cannot start the job runner: %s", text);
        free (text);
        Py_XDECREF (code);
        Py_XDECREF (done);
        Py_XDECREF (paths);
        Py_XDECREF (allow);
        Py_XDECREF (globals);
        return -1;
    }
    Py_DECREF (code);
    Py_DECREF (done);
    PyObject *setup = PyDict_GetItemString (globals, "setup");  // borrowed
    failure = PyObject_CallFunction (setup, "OOzzz", paths, allow, config->setup,
                                     config->job_entry, config->job_exit);
    Py_DECREF (paths);
    Py_DECREF (allow);
    int rc = 0, fatal = 1;
    const char *shown = NULL;
    if (!failure) {
        char *text = s_exception_text ();
        snprintf (err, errlen, "python hooks: %s", text ? text : "failed");
        free (text);
        rc = -1;
    }
    else if (failure != Py_None) {
        if (!PyArg_ParseTuple (failure, "ps", &fatal, &shown))
            PyErr_Clear ();
        if (fatal) {
            snprintf (err, errlen, "python hooks: %s", shown ? shown : "failed");
            rc = -1;
        }
        else
            snprintf (warning, warninglen, "%s", shown ? shown : "failed");
    }
    Py_XDECREF (failure);
    if (rc == 0) {
        s_run = PyDict_GetItemString (globals, "run");
        Py_XINCREF (s_run);
    }
    Py_DECREF (globals);
    return rc;
}

void
emq_python_call (emq_python_call_t *call)
{
    call->status = EMQP_STATUS_FAILED;
    call->text = NULL;
    call->size = 0;
    PyObject *result =
        PyObject_CallFunction (s_run, "sss", call->path, call->callable, call->args);
    int status = 1;
    const char *bytes = NULL;
    Py_ssize_t size = 0;
    if (!result || !PyArg_ParseTuple (result, "iy#", &status, &bytes, &size)) {
        call->text = s_exception_text ();
        call->size = call->text ? strlen (call->text) : 0;
        Py_XDECREF (result);
        return;
    }
    call->status = status == 0   ? EMQP_STATUS_OK
                   : status == 2 ? EMQP_STATUS_REJECTED
                                 : EMQP_STATUS_FAILED;
    call->text = malloc (size ? (size_t) size : 1);
    if (call->text) {
        memcpy (call->text, bytes, (size_t) size);
        call->size = (size_t) size;
    }
    Py_DECREF (result);
}
