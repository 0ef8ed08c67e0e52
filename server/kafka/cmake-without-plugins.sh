#!/bin/sh
# cmake as rdkafka-sys calls it, with librdkafka's plugin support switched off at configure time: a plugin is a
# shared library librdkafka dlopen()s by path (`plugin.library.paths`), and Eddy never loads native code named by
# a setting. rdkafka-sys offers no switch for it, so `.cargo/config.toml` points its `CMAKE` here.
case "$1" in
  --build|--install|-E|-P|--version) exec cmake "$@" ;;
  *) exec cmake -DWITH_PLUGINS=OFF "$@" ;;
esac
