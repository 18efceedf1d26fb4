/// <reference types="vite/client" />
interface ImportMetaEnv { readonly VITE_RCALL_SERVER?: string }
