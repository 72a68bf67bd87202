# cuDNN (9 or later) and NCCL for the CUDA backend: the imported targets effnet::cudnn and
# effnet::nccl, EFFNET_CUDNN_FOUND / EFFNET_NCCL_FOUND, and one status line each. Included after
# find_package(CUDAToolkit REQUIRED); also finds the libraries inside NVIDIA's Python wheels.
#
# Search order, per library, stopping at the first place that holds both its header and its
# library: <NAME>_ROOT (CUDNN_ROOT, NCCL_ROOT: a CMake variable, else the environment variable),
# the CUDA toolkit's include and library dirs, the system's default paths, then the `nvidia`
# namespace package of EFFNET_WHEEL_PYTHON (python3 from PATH unless set): <nvidia>/cudnn,
# <nvidia>/nccl and <nvidia>/cu13, each with include/ and lib/. Wheels ship only versioned
# libraries (libcudnn.so.9, libnccl.so.2), so those names are searched too.
include_guard(GLOBAL)

find_program(EFFNET_WHEEL_PYTHON python3
             DOC "Python interpreter whose nvidia-* wheels (cuDNN, NCCL) are searched last")

# The folders of the `nvidia` namespace package (one per site-packages that holds part of it),
# as EFFNET_WHEEL_PYTHON reports them; empty when there is no interpreter or no such package.
function(_effnet_nvidia_wheel_dirs out)
  set(dirs "")
  if(EFFNET_WHEEL_PYTHON)
    execute_process(
      COMMAND "${EFFNET_WHEEL_PYTHON}" -c "import nvidia; print(';'.join(nvidia.__path__))"
      OUTPUT_VARIABLE dirs OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
      set(dirs "")
    endif()
  endif()
  set(${out} "${dirs}" PARENT_SCOPE)
endfunction()

# Looks for <header> and one of <names> with the given include and library folders (or, with
# inc_dirs "DEFAULT", in the system's default paths). On success sets <prefix>_INCLUDE_DIR,
# <prefix>_LIBRARY and <prefix>_WHERE (= <where>) in the caller's scope.
function(_effnet_find_pair prefix where header names inc_dirs lib_dirs)
  unset(_effnet_inc)
  unset(_effnet_lib)
  if(inc_dirs STREQUAL "DEFAULT")
    find_path(_effnet_inc ${header} NO_CACHE)
    find_library(_effnet_lib NAMES ${names} NAMES_PER_DIR NO_CACHE)
  else()
    find_path(_effnet_inc ${header} PATHS ${inc_dirs} NO_DEFAULT_PATH NO_CACHE)
    find_library(_effnet_lib NAMES ${names} NAMES_PER_DIR PATHS ${lib_dirs} NO_DEFAULT_PATH NO_CACHE)
  endif()
  if(_effnet_inc AND _effnet_lib)
    string(REGEX REPLACE "(.)/$" "\\1" _effnet_inc "${_effnet_inc}")
    set(${prefix}_INCLUDE_DIR "${_effnet_inc}" PARENT_SCOPE)
    set(${prefix}_LIBRARY "${_effnet_lib}" PARENT_SCOPE)
    set(${prefix}_WHERE "${where}" PARENT_SCOPE)
  endif()
endfunction()

# Searches the four places in order for one library; <root_var> names CUDNN_ROOT or NCCL_ROOT,
# <wheel_subdirs> the folders under `nvidia` that may hold it.
function(_effnet_find_cuda_lib prefix root_var header names wheel_subdirs)
  set(root "")
  if(DEFINED ${root_var} AND NOT "${${root_var}}" STREQUAL "")
    set(root "${${root_var}}")
  elseif(DEFINED ENV{${root_var}} AND NOT "$ENV{${root_var}}" STREQUAL "")
    set(root "$ENV{${root_var}}")
  endif()
  if(root)
    _effnet_find_pair(${prefix} "${root_var}=${root}" ${header} "${names}"
                      "${root}/include" "${root}/lib;${root}/lib64;${root}/lib/x86_64-linux-gnu")
    if(NOT ${prefix}_LIBRARY)
      list(JOIN names " or " names_text)
      message(WARNING "effnet: ${root_var}=${root} holds no include/${header} with ${names_text} "
                      "in lib/ or lib64/; searching the CUDA toolkit, the system and python3's "
                      "nvidia wheels instead")
    endif()
  endif()
  if(NOT ${prefix}_LIBRARY)
    _effnet_find_pair(${prefix} "the CUDA toolkit" ${header} "${names}"
                      "${CUDAToolkit_INCLUDE_DIRS}" "${CUDAToolkit_LIBRARY_DIR}")
  endif()
  if(NOT ${prefix}_LIBRARY)
    _effnet_find_pair(${prefix} "the system paths" ${header} "${names}" DEFAULT "")
  endif()
  if(NOT ${prefix}_LIBRARY)
    _effnet_nvidia_wheel_dirs(nvidia_dirs)
    foreach(dir IN LISTS nvidia_dirs)
      foreach(sub IN LISTS wheel_subdirs)
        if(NOT ${prefix}_LIBRARY)
          _effnet_find_pair(${prefix} "the Python wheel of ${EFFNET_WHEEL_PYTHON}" ${header}
                            "${names}" "${dir}/${sub}/include" "${dir}/${sub}/lib")
        endif()
      endforeach()
    endforeach()
  endif()
  set(${prefix}_INCLUDE_DIR "${${prefix}_INCLUDE_DIR}" PARENT_SCOPE)
  set(${prefix}_LIBRARY "${${prefix}_LIBRARY}" PARENT_SCOPE)
  set(${prefix}_WHERE "${${prefix}_WHERE}" PARENT_SCOPE)
endfunction()

# <prefix>_VERSION from the #define <macro_prefix>{MAJOR,MINOR,<patch>} lines of <file>.
function(_effnet_header_version prefix file macro_prefix patch)
  set(version "")
  foreach(part MAJOR MINOR ${patch})
    file(STRINGS "${file}" line REGEX "^#define ${macro_prefix}${part} +[0-9]+")
    string(REGEX REPLACE "^#define ${macro_prefix}${part} +([0-9]+).*" "\\1" number "${line}")
    list(APPEND version "${number}")
  endforeach()
  list(JOIN version "." version)
  set(${prefix}_VERSION "${version}" PARENT_SCOPE)
endfunction()

# Defines the imported target <target> for a shared library and its headers; the headers need
# the CUDA runtime's (cuda_runtime_api.h), hence CUDA::toolkit.
function(_effnet_import_target target library include_dir)
  add_library(${target} SHARED IMPORTED GLOBAL)
  set_target_properties(${target} PROPERTIES
    IMPORTED_LOCATION "${library}"
    INTERFACE_INCLUDE_DIRECTORIES "${include_dir}"
    INTERFACE_LINK_LIBRARIES CUDA::toolkit)
endfunction()

# ---- cuDNN ------------------------------------------------------------------------------
_effnet_find_cuda_lib(EFFNET_CUDNN CUDNN_ROOT cudnn.h "cudnn;libcudnn.so.9" "cudnn;cu13")
if(EFFNET_CUDNN_LIBRARY)
  set(version_file "${EFFNET_CUDNN_INCLUDE_DIR}/cudnn_version.h")
  if(NOT EXISTS "${version_file}")
    set(version_file "${EFFNET_CUDNN_INCLUDE_DIR}/cudnn.h")  # cuDNN 7 and older keep it there
  endif()
  _effnet_header_version(EFFNET_CUDNN "${version_file}" CUDNN_ PATCHLEVEL)
  if(NOT EFFNET_CUDNN_VERSION MATCHES "^[0-9]+\\.[0-9]+\\.[0-9]+$" OR EFFNET_CUDNN_VERSION VERSION_LESS 9)
    message(FATAL_ERROR "effnet: cuDNN '${EFFNET_CUDNN_VERSION}' (read from ${version_file}) found "
                        "in ${EFFNET_CUDNN_WHERE}, but the CUDA backend needs cuDNN 9 or later: "
                        "point CUDNN_ROOT at a cuDNN 9 install (its include/ and lib/), or turn "
                        "EFFNET_CUDA off")
  endif()
  _effnet_import_target(effnet::cudnn "${EFFNET_CUDNN_LIBRARY}" "${EFFNET_CUDNN_INCLUDE_DIR}")
  set(EFFNET_CUDNN_FOUND TRUE)
  message(STATUS "effnet: cuDNN ${EFFNET_CUDNN_VERSION} found in ${EFFNET_CUDNN_WHERE} "
                 "(${EFFNET_CUDNN_LIBRARY}, headers in ${EFFNET_CUDNN_INCLUDE_DIR})")
else()
  set(EFFNET_CUDNN_FOUND FALSE)
  message(STATUS "effnet: cuDNN not found (searched CUDNN_ROOT, the CUDA toolkit, the system "
                 "paths and python3's nvidia wheels): set CUDNN_ROOT to a folder with "
                 "include/cudnn.h and lib/libcudnn.so*")
endif()

# ---- NCCL -------------------------------------------------------------------------------
_effnet_find_cuda_lib(EFFNET_NCCL NCCL_ROOT nccl.h "nccl;libnccl.so.2" "nccl;cu13")
if(EFFNET_NCCL_LIBRARY)
  _effnet_header_version(EFFNET_NCCL "${EFFNET_NCCL_INCLUDE_DIR}/nccl.h" NCCL_ PATCH)
  _effnet_import_target(effnet::nccl "${EFFNET_NCCL_LIBRARY}" "${EFFNET_NCCL_INCLUDE_DIR}")
  set(EFFNET_NCCL_FOUND TRUE)
  message(STATUS "effnet: NCCL ${EFFNET_NCCL_VERSION} found in ${EFFNET_NCCL_WHERE} "
                 "(${EFFNET_NCCL_LIBRARY}, headers in ${EFFNET_NCCL_INCLUDE_DIR})")
else()
  set(EFFNET_NCCL_FOUND FALSE)
  message(STATUS "effnet: NCCL not found (searched NCCL_ROOT, the CUDA toolkit, the system "
                 "paths and python3's nvidia wheels): set NCCL_ROOT to a folder with "
                 "include/nccl.h and lib/libnccl.so*")
endif()
