from pkgutil import extend_path

# Merge every modseg_ros/ directory on sys.path: the hand-written sources and the message code that
# rosidl generates and installs separately. Keep this file to exactly this; code goes in submodules.
__path__ = extend_path(__path__, __name__)
